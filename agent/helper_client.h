/* SPDX-License-Identifier: MIT */
/*
 * Talking to a helper already loaded in a target: find it in the maps, read
 * its state, run commands through helper memory and its eventfds, renew the
 * lease. No ptrace: once the helper is in, every command is cheap.
 */
#ifndef PYDI_HELPER_CLIENT_H
#define PYDI_HELPER_CLIENT_H

#include <stdint.h>
#include <sys/types.h>

#include "helper_abi.h"

struct helper_client {
	pid_t pid;
	uint64_t state_addr;
	struct pydi_helper_state state;	/* as last read */
	uint64_t map_start;		/* the helper's first mapping */
	uint64_t map_end;
	uint64_t hook_addr;		/* pydi_hook_event in the target */
	uint64_t hook_file_offset;	/* ... as a file offset (uprobe) */
	int pidfd;
	int wake_fd;			/* our copies of the helper's eventfds */
	int done_fd;
};

/* Find a loaded helper: 0, -ENOENT (not loaded), -EPROTO (foreign or
 * incompatible), or another negative errno. */
int helper_find(pid_t pid, struct helper_client *hc);
int helper_read_state(struct helper_client *hc);

/* Serialize pydi processes on one target: one injector, one command at a
 * time. *lock_fd is -1 (unlocked) when the lock file cannot be created;
 * -EBUSY when another holder kept it past timeout_ms. */
#define PYDI_LOCK_FILE "/run/pydi.lock"
enum helper_lock_role { HELPER_LOCK_INJECT = 0, HELPER_LOCK_COMMAND = 1 };
int helper_lock(pid_t pid, enum helper_lock_role role, int timeout_ms,
		int *lock_fd);
void helper_unlock(int lock_fd);

/* Run one command (under the command lock); *reply is malloc'd JSON.
 * -ETIMEDOUT if the helper did not answer in time (it may be waiting for
 * the GIL), -EBUSY if another pydi kept the channel that long. */
int helper_command(struct helper_client *hc, const char *json, char **reply,
		   int timeout_ms);

/* Set the lease to expire lease_ms from now (0 clears it). */
int helper_set_lease(struct helper_client *hc, uint64_t lease_ms);

void helper_close(struct helper_client *hc);

#endif /* PYDI_HELPER_CLIENT_H */
