/* SPDX-License-Identifier: MIT */
/* Decoded code objects of one target, by address. */
#ifndef PYDI_CODE_CACHE_H
#define PYDI_CODE_CACHE_H

#include "pycode.h"

#define CODE_CACHE_SLOTS 4096	/* power of 2 */

struct code_cache {
	const struct mem_reader *mr;
	const struct py_offsets *off;
	struct pycode_info *slots[CODE_CACHE_SLOTS];
	size_t count;
};

void code_cache_init(struct code_cache *cc, const struct mem_reader *mr,
		     const struct py_offsets *off);
/* The decoded code object at addr (read on first use), or NULL. */
const struct pycode_info *code_cache_get(struct code_cache *cc, uint64_t addr);
void code_cache_clear(struct code_cache *cc);

/* The line of byte offset into the code's bytecode; -1 if none. */
int pycode_line_at(const struct pycode_info *ci, uint64_t offset);

#endif /* PYDI_CODE_CACHE_H */
