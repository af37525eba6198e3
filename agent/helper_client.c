// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "helper_client.h"
#include "mapped_elf.h"
#include "memread.h"
#include "procmaps.h"
#include "ptrace_call.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

static int read_mem(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	struct proc_mem pm;
	int err;

	proc_mem_init(&pm, pid);
	err = proc_mem_read(&pm, addr, buf, len);
	proc_mem_close(&pm);
	return err;
}

int helper_read_state(struct helper_client *hc)
{
	return read_mem(hc->pid, hc->state_addr, &hc->state, sizeof(hc->state));
}

/* A copy of the target's fd in our process (eventfds cannot be reopened
 * through /proc/PID/fd). */
static int grab_fd(struct helper_client *hc, int target_fd)
{
	int fd;

	if (target_fd < 0)
		return -EBADF;
	fd = (int)syscall(SYS_pidfd_getfd, hc->pidfd, target_fd, 0);
	return fd < 0 ? -errno : fd;
}

int helper_find(pid_t pid, struct helper_client *hc)
{
	const struct map_entry *m;
	struct proc_maps maps;
	uint64_t offset;
	int err;

	memset(hc, 0, sizeof(*hc));
	hc->pid = pid;
	hc->pidfd = hc->wake_fd = hc->done_fd = -1;
	err = proc_maps_read(pid, &maps);
	if (err)
		return err == -ENOENT ? -ESRCH : err;
	m = mapped_file_find(&maps, "memfd:" PYDI_HELPER_MEMFD_NAME);
	if (!m) {
		err = -ENOENT;
		goto out;
	}
	hc->map_start = m->start;
	hc->map_end = m->end;
	err = mapped_elf_symbol(pid, &maps, m, PYDI_HELPER_STATE_SYM,
				&hc->state_addr, NULL);
	if (!err)
		err = mapped_elf_symbol(pid, &maps, m, "pydi_hook_event",
					&hc->hook_addr, NULL);
	if (err) {
		err = -EPROTO;
		goto out;
	}
	/* The uprobe wants a file offset: mapping offset + distance into it. */
	offset = m->offset;
	for (size_t i = 0; i < maps.count; i++) {
		const struct map_entry *e = &maps.entries[i];

		if (e->inode == m->inode && hc->hook_addr >= e->start &&
		    hc->hook_addr < e->end)
			offset = e->offset + (hc->hook_addr - e->start);
	}
	hc->hook_file_offset = offset;
	err = helper_read_state(hc);
	if (err)
		goto out;
	if (hc->state.magic != PYDI_HELPER_MAGIC ||
	    hc->state.abi != PYDI_HELPER_ABI) {
		err = -EPROTO;
		goto out;
	}
out:
	proc_maps_free(&maps);
	return err;
}

static int open_channel(struct helper_client *hc)
{
	if (hc->pidfd < 0) {
		hc->pidfd = (int)syscall(SYS_pidfd_open, hc->pid, 0);
		if (hc->pidfd < 0)
			return -errno;
	}
	if (hc->wake_fd < 0) {
		hc->wake_fd = grab_fd(hc, hc->state.wake_fd);
		if (hc->wake_fd < 0)
			return hc->wake_fd;
	}
	if (hc->done_fd < 0) {
		hc->done_fd = grab_fd(hc, hc->state.done_fd);
		if (hc->done_fd < 0)
			return hc->done_fd;
	}
	return 0;
}

#define STATE_FIELD(hc, f) ((hc)->state_addr + offsetof(struct pydi_helper_state, f))

/*
 * One pydi process at a time per target and per role: the command channel
 * has a single slot (two clients would pick the same sequence number, one
 * overwriting the other's command and waiting for a reply that never comes),
 * and two injectors would race for the same threads. An OFD lock on one byte
 * of a host-wide file, at 2*pid + role, serializes them; the kernel drops it
 * when its holder exits, so nothing goes stale.
 */
int helper_lock(pid_t pid, enum helper_lock_role role, int timeout_ms,
		int *lock_fd)
{
	struct flock fl = {
		.l_type = F_WRLCK,
		.l_whence = SEEK_SET,
		.l_start = (off_t)pid * 2 + role,
		.l_len = 1,
	};
	uint64_t deadline = monotonic_ms() + (uint64_t)timeout_ms;
	int fd;

	*lock_fd = -1;
	fd = open(PYDI_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return 0;	/* no place for the lock (read-only /run): go unlocked */
	while (fcntl(fd, F_OFD_SETLK, &fl)) {
		if ((errno != EAGAIN && errno != EACCES) || monotonic_ms() >= deadline) {
			int err = errno == EAGAIN || errno == EACCES ? -EBUSY : -errno;

			close(fd);
			return err;
		}
		usleep(1000);
	}
	*lock_fd = fd;
	return 0;
}

void helper_unlock(int lock_fd)
{
	if (lock_fd >= 0)
		close(lock_fd);	/* closing the description releases the lock */
}

static int command_locked(struct helper_client *hc, const char *json,
			  char **reply, int timeout_ms);

int helper_command(struct helper_client *hc, const char *json, char **reply,
		   int timeout_ms)
{
	uint64_t start = monotonic_ms();
	int lock_fd, err;

	err = helper_lock(hc->pid, HELPER_LOCK_COMMAND, timeout_ms, &lock_fd);
	if (err)
		return err;
	timeout_ms -= (int)(monotonic_ms() - start);
	err = command_locked(hc, json, reply, timeout_ms > 0 ? timeout_ms : 0);
	helper_unlock(lock_fd);
	return err;
}

static int command_locked(struct helper_client *hc, const char *json,
			  char **reply, int timeout_ms)
{
	size_t len = strlen(json);
	uint64_t seq, one = 1, deadline;
	char *buf;
	int err;

	if ((err = helper_read_state(hc)))
		return err;
	if (hc->state.status != PYDI_HELPER_READY)
		return -ENOTCONN;
	if (len >= PYDI_CMD_MAX)
		return -E2BIG;
	if ((err = open_channel(hc)))
		return err;
	seq = hc->state.cmd_seq + 1;
	if ((err = pt_write_mem(hc->pid, hc->state.cmd_buf, json, len + 1)) ||
	    (err = pt_write_mem(hc->pid, STATE_FIELD(hc, cmd_len), &(uint64_t){ len },
				sizeof(uint64_t))) ||
	    (err = pt_write_mem(hc->pid, STATE_FIELD(hc, cmd_seq), &seq,
				sizeof(seq))))
		return err;
	if (write(hc->wake_fd, &one, sizeof(one)) < 0)
		return -errno;

	deadline = monotonic_ms() + (uint64_t)timeout_ms;
	for (;;) {
		struct pollfd p = { .fd = hc->done_fd, .events = POLLIN };
		uint64_t count;

		if ((err = helper_read_state(hc)))
			return err;
		if (hc->state.reply_seq == seq)
			break;
		if (monotonic_ms() >= deadline)
			return -ETIMEDOUT;
		if (poll(&p, 1, 50) > 0 && read(hc->done_fd, &count, sizeof(count)) < 0 &&
		    errno != EAGAIN)
			return -errno;
	}
	if (hc->state.reply_len >= PYDI_REPLY_MAX)
		return -EPROTO;
	buf = malloc(hc->state.reply_len + 1);
	if (!buf)
		return -ENOMEM;
	err = read_mem(hc->pid, hc->state.reply_buf, buf, hc->state.reply_len);
	if (err) {
		free(buf);
		return err;
	}
	buf[hc->state.reply_len] = '\0';
	*reply = buf;
	return 0;
}

int helper_set_lease(struct helper_client *hc, uint64_t lease_ms)
{
	uint64_t deadline = lease_ms ? monotonic_ns() + lease_ms * 1000000ull : 0;

	return pt_write_mem(hc->pid, STATE_FIELD(hc, lease_deadline_ns),
			    &deadline, sizeof(deadline));
}

void helper_close(struct helper_client *hc)
{
	if (hc->wake_fd >= 0)
		close(hc->wake_fd);
	if (hc->done_fd >= 0)
		close(hc->done_fd);
	if (hc->pidfd >= 0)
		close(hc->pidfd);
	hc->wake_fd = hc->done_fd = hc->pidfd = -1;
}
