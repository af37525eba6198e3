/* SPDX-License-Identifier: MIT */
/* Target memory for a harness: the input's bytes mapped at one address,
 * read through the same struct mem_reader the agent uses. */
#ifndef PYDI_FUZZ_FAKE_SPACE_H
#define PYDI_FUZZ_FAKE_SPACE_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

struct fake_space {
	uint64_t base;
	const uint8_t *mem;
	size_t len;
};

/* Reads outside [base, base + len) fail with -EFAULT, as unmapped memory. */
static inline int fake_read(void *ctx, uint64_t addr, void *buf, size_t len)
{
	const struct fake_space *fs = ctx;

	if (addr < fs->base || addr - fs->base > fs->len ||
	    len > fs->len - (addr - fs->base))
		return -EFAULT;
	memcpy(buf, fs->mem + (addr - fs->base), len);
	return 0;
}

#endif /* PYDI_FUZZ_FAKE_SPACE_H */
