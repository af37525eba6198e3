// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/uio.h>
#include <unistd.h>

#include "memread.h"

void proc_mem_init(struct proc_mem *pm, pid_t pid)
{
	pm->pid = pid;
	pm->mem_fd = -1;
	pm->use_mem_file = 0;
}

void proc_mem_close(struct proc_mem *pm)
{
	if (pm->mem_fd >= 0)
		close(pm->mem_fd);
	pm->mem_fd = -1;
}

static int read_mem_file(struct proc_mem *pm, uint64_t addr, void *buf,
			 size_t len)
{
	ssize_t n;

	if (pm->mem_fd < 0) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/%d/mem", pm->pid);
		pm->mem_fd = open(path, O_RDONLY | O_CLOEXEC);
		if (pm->mem_fd < 0)
			return -errno;
	}
	if (addr > INT64_MAX)
		return -EFAULT;
	n = pread(pm->mem_fd, buf, len, (off_t)addr);
	if (n < 0)
		return -errno;
	return (size_t)n == len ? 0 : -EFAULT;
}

int proc_mem_read(void *ctx, uint64_t addr, void *buf, size_t len)
{
	struct proc_mem *pm = ctx;
	struct iovec local = { .iov_base = buf, .iov_len = len };
	struct iovec remote = { .iov_base = (void *)(uintptr_t)addr,
				.iov_len = len };
	ssize_t n;

	if (len == 0)
		return 0;
	if (addr == 0 || addr + len < addr)
		return -EFAULT;
	if (!pm->use_mem_file) {
		n = process_vm_readv(pm->pid, &local, 1, &remote, 1, 0);
		if (n >= 0)
			return (size_t)n == len ? 0 : -EFAULT;
		if (errno == ESRCH || errno == EFAULT)
			return -errno;
		/* ENOSYS/EPERM (e.g. seccomp): /proc/PID/mem may still work. */
		pm->use_mem_file = 1;
	}
	return read_mem_file(pm, addr, buf, len);
}

struct mem_reader proc_mem_reader(struct proc_mem *pm)
{
	return (struct mem_reader){ .read = proc_mem_read, .ctx = pm };
}

int mem_read_u64(const struct mem_reader *mr, uint64_t addr, uint64_t *out)
{
	return mem_read(mr, addr, out, sizeof(*out));
}

int mem_read_u32(const struct mem_reader *mr, uint64_t addr, uint32_t *out)
{
	return mem_read(mr, addr, out, sizeof(*out));
}

int mem_read_i32(const struct mem_reader *mr, uint64_t addr, int32_t *out)
{
	return mem_read(mr, addr, out, sizeof(*out));
}
