/* SPDX-License-Identifier: MIT */
/* A code object read out of a live target. */
#ifndef PYDI_PYCODE_H
#define PYDI_PYCODE_H

#include <stddef.h>
#include <stdint.h>

#include "linetable.h"
#include "memread.h"
#include "py_offsets.h"

/* co_localspluskinds bits (Include/internal/pycore_code.h) */
#define CO_FAST_HIDDEN	0x10
#define CO_FAST_LOCAL	0x20
#define CO_FAST_CELL	0x40
#define CO_FAST_FREE	0x80

struct pycode_info {
	uint64_t addr;
	char *qualname;
	char *name;
	char *filename;
	int first_line;
	int argcount;
	int posonlyargcount;
	int kwonlyargcount;
	int flags;
	size_t nlocalsplus;
	char **localsplus_names;
	uint8_t *localsplus_kinds;
	struct line_range *ranges;	/* co_lines() */
	size_t nranges;
	int32_t *lines;			/* lines with code, ascending */
	size_t nlines;
};

/* 0, -EINVAL (not a code object or malformed), or a read error. */
int pycode_read(const struct mem_reader *mr, const struct py_offsets *off,
		uint64_t addr, struct pycode_info *info);
void pycode_free(struct pycode_info *info);

#endif /* PYDI_PYCODE_H */
