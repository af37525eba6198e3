/* SPDX-License-Identifier: MIT */
/*
 * Reading a target's memory. Everything that decodes target memory goes
 * through struct mem_reader, so tests and fuzzers can hand it arbitrary bytes.
 */
#ifndef PYDI_MEMREAD_H
#define PYDI_MEMREAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct mem_reader {
	/* Copy exactly len bytes at addr into buf: 0 or a negative errno. */
	int (*read)(void *ctx, uint64_t addr, void *buf, size_t len);
	void *ctx;
};

/* A live process: process_vm_readv, falling back to /proc/PID/mem. */
struct proc_mem {
	pid_t pid;
	int mem_fd;		/* opened lazily; -1 until needed */
	int use_mem_file;	/* process_vm_readv refused once: stop trying */
};

void proc_mem_init(struct proc_mem *pm, pid_t pid);
void proc_mem_close(struct proc_mem *pm);
int proc_mem_read(void *ctx, uint64_t addr, void *buf, size_t len);
struct mem_reader proc_mem_reader(struct proc_mem *pm);

static inline int mem_read(const struct mem_reader *mr, uint64_t addr,
			   void *buf, size_t len)
{
	return mr->read(mr->ctx, addr, buf, len);
}

int mem_read_u64(const struct mem_reader *mr, uint64_t addr, uint64_t *out);
int mem_read_u32(const struct mem_reader *mr, uint64_t addr, uint32_t *out);
int mem_read_i32(const struct mem_reader *mr, uint64_t addr, int32_t *out);

#endif /* PYDI_MEMREAD_H */
