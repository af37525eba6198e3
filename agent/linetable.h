/* SPDX-License-Identifier: MIT */
/*
 * The CPython 3.11+ location table (co_linetable), decoded into the same
 * ranges code.co_lines() yields: [start, end) in bytes of bytecode, and the
 * line, or -1 where the instructions have no line.
 */
#ifndef PYDI_LINETABLE_H
#define PYDI_LINETABLE_H

#include <stddef.h>
#include <stdint.h>

struct line_range {
	uint32_t start;		/* byte offset of the first instruction */
	uint32_t end;		/* byte offset past the last instruction */
	int32_t line;		/* -1: no line (co_lines() says None) */
};

/*
 * Decode table[0..len) for a code object whose co_firstlineno is
 * first_line. Allocates *ranges (free() it). 0 or -EINVAL on a malformed
 * table, -ENOMEM.
 */
int linetable_decode(const uint8_t *table, size_t len, int first_line,
		     struct line_range **ranges, size_t *count);

/* Merge consecutive ranges with the same line in place, as co_lines() does
 * from 3.12 on. */
void linetable_merge(struct line_range *ranges, size_t *count);

/*
 * The distinct lines that have code, ascending, into a newly allocated
 * *lines (free() it).
 */
int linetable_lines(const struct line_range *ranges, size_t count,
		    int32_t **lines, size_t *nlines);

#endif /* PYDI_LINETABLE_H */
