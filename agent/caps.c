// SPDX-License-Identifier: MIT
/*
 * The capabilities the agent needs, each shown necessary by running
 * `pydi trace` with it dropped (deploy/README.md has the commands and the
 * errors). CAP_BPF, CAP_PERFMON and CAP_CHECKPOINT_RESTORE are not listed:
 * CAP_SYS_ADMIN, which uprobes need anyway, satisfies every check they
 * would (bpf_capable(), perfmon_capable(), checkpoint_restore_ns_capable()).
 * CAP_SYS_RESOURCE is not needed: BPF memory is charged to the memory
 * cgroup, not RLIMIT_MEMLOCK, since Linux 5.11.
 */
#include <errno.h>
#include <stdbool.h>
#include <linux/capability.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "caps.h"
#include "errbuf.h"

#define AGENT_CAP(c, why) { c, #c, why }

const struct agent_cap agent_caps[] = {
	AGENT_CAP(CAP_SYS_ADMIN,
		  "attach uprobes, which Linux 6.16+ allows only with it, and open /proc/PID/map_files; it also covers loading BPF"),
	AGENT_CAP(CAP_SYS_PTRACE,
		  "ptrace, process_vm_readv/writev, pidfd_getfd and /proc/PID/{exe,maps,mem} of processes of other users or with more capabilities"),
	AGENT_CAP(CAP_DAC_READ_SEARCH,
		  "enter /proc/PID/map_files and read /proc/PID/environ of processes running as another uid"),
	AGENT_CAP(CAP_KILL,
		  "tgkill to another uid: re-deliver the signals a target thread got while stopped for injection"),
};

const size_t agent_caps_count = sizeof(agent_caps) / sizeof(agent_caps[0]);

/* capget's 64 capabilities arrive as two 32-bit words. */
static int effective_caps(uint64_t *eff)
{
	struct __user_cap_header_struct hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3,
		.pid = 0,
	};
	struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data))
		return -errno;
	*eff = (uint64_t)data[1].effective << 32 | data[0].effective;
	return 0;
}

/* "missing CAP_A (why), CAP_B (why)"; with names only when the whys do not
 * fit, so that no missing capability goes unnamed. Returns how many. */
static size_t describe_missing(uint64_t eff, bool with_why, char *err,
			       size_t err_len, bool *truncated)
{
	size_t used = 0, missing = 0;

	*truncated = false;
	for (size_t i = 0; i < agent_caps_count; i++) {
		const struct agent_cap *c = &agent_caps[i];
		int n;

		if ((eff >> c->cap) & 1)
			continue;
		missing++;
		if (used >= err_len) {
			*truncated = true;
			continue;
		}
		n = snprintf(err + used, err_len - used, "%s%s%s%s%s",
			     missing == 1 ? "missing " : ", ", c->name,
			     with_why ? " (" : "", with_why ? c->why : "",
			     with_why ? ")" : "");
		if (n < 0)
			continue;
		used += (size_t)n;
		if (used >= err_len)
			*truncated = true;
	}
	return missing;
}

int caps_check(char *err, size_t err_len)
{
	uint64_t eff = 0;
	bool truncated;
	int ret = effective_caps(&eff);

	if (err && err_len)
		err[0] = '\0';
	if (ret) {
		set_err(err, err_len, "reading the agent's capabilities (capget): %s",
			strerror(-ret));
		return ret;
	}
	if (!err)
		err_len = 0;
	if (!describe_missing(eff, true, err, err_len, &truncated))
		return 0;
	if (truncated && err_len)
		describe_missing(eff, false, err, err_len, &truncated);
	return -EPERM;
}
