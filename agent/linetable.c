// SPDX-License-Identifier: MIT
/*
 * Format (CPython's Objects/locations.md): each entry starts with a byte
 * whose top bit is set; bits 3-6 hold the kind, bits 0-2 the number of
 * code units covered minus one. Later bytes of the entry never have the top
 * bit set. Only the line matters here, so columns are skipped.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

#include "linetable.h"

enum {
	LOC_SHORT_MAX = 9,	/* 0-9: short form, same line */
	LOC_ONE_LINE0 = 10,	/* 10-12: one-line forms, line delta 0-2 */
	LOC_ONE_LINE2 = 12,
	LOC_NO_COLUMNS = 13,	/* signed varint line delta */
	LOC_LONG = 14,		/* signed varint line delta, then more */
	LOC_NONE = 15,		/* no location */
};

#define CODE_UNIT_BYTES 2
/* A varint holding an int needs at most 6 six-bit chunks. */
#define VARINT_MAX_CHUNKS 6

struct cursor {
	const uint8_t *p;
	const uint8_t *end;
};

static bool entry_start(uint8_t b)
{
	return b & 0x80;
}

/* An unsigned varint inside the current entry. */
static int read_varint(struct cursor *c, uint32_t *out)
{
	uint32_t value = 0;
	int shift = 0;

	for (int i = 0; i < VARINT_MAX_CHUNKS; i++) {
		uint8_t b;

		if (c->p >= c->end || entry_start(*c->p))
			return -EINVAL;
		b = *c->p++;
		value |= (uint32_t)(b & 0x3f) << shift;
		if (!(b & 0x40)) {
			*out = value;
			return 0;
		}
		shift += 6;
	}
	return -EINVAL;
}

static int read_signed_varint(struct cursor *c, int64_t *out)
{
	uint32_t raw;
	int err = read_varint(c, &raw);

	if (err)
		return err;
	*out = raw & 1 ? -(int64_t)(raw >> 1) : (int64_t)(raw >> 1);
	return 0;
}

static int line_delta(struct cursor *c, int kind, int64_t *delta)
{
	if (kind == LOC_NO_COLUMNS || kind == LOC_LONG)
		return read_signed_varint(c, delta);
	if (kind >= LOC_ONE_LINE0 && kind <= LOC_ONE_LINE2)
		*delta = kind - LOC_ONE_LINE0;
	else
		*delta = 0;
	return 0;
}

int linetable_decode(const uint8_t *table, size_t len, int first_line,
		     struct line_range **ranges_out, size_t *count_out)
{
	struct cursor c = { .p = table, .end = len ? table + len : table };
	struct line_range *ranges;
	int64_t line = first_line;
	uint64_t offset = 0;
	size_t count = 0;

	/* Every entry takes at least one byte. */
	ranges = malloc((len ? len : 1) * sizeof(*ranges));
	if (!ranges)
		return -ENOMEM;
	while (c.p < c.end) {
		uint8_t head = *c.p++;
		int kind = (head >> 3) & 0xf;
		uint64_t units = (uint64_t)(head & 7) + 1;
		int64_t delta;

		if (!entry_start(head) || line_delta(&c, kind, &delta))
			goto malformed;
		line += delta;
		if (line < INT32_MIN || line > INT32_MAX)
			goto malformed;
		/* Skip the rest of the entry (columns). */
		while (c.p < c.end && !entry_start(*c.p))
			c.p++;
		if (offset + units * CODE_UNIT_BYTES > UINT32_MAX)
			goto malformed;
		ranges[count].start = (uint32_t)offset;
		offset += units * CODE_UNIT_BYTES;
		ranges[count].end = (uint32_t)offset;
		ranges[count].line = kind == LOC_NONE ? -1 : (int32_t)line;
		count++;
	}
	*ranges_out = ranges;
	*count_out = count;
	return 0;
malformed:
	free(ranges);
	return -EINVAL;
}

void linetable_merge(struct line_range *ranges, size_t *count)
{
	size_t out = 0;

	for (size_t i = 0; i < *count; i++) {
		if (out && ranges[out - 1].line == ranges[i].line &&
		    ranges[out - 1].end == ranges[i].start) {
			ranges[out - 1].end = ranges[i].end;
			continue;
		}
		ranges[out++] = ranges[i];
	}
	*count = out;
}

static int compare_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	return (x > y) - (x < y);
}

int linetable_lines(const struct line_range *ranges, size_t count,
		    int32_t **lines_out, size_t *nlines_out)
{
	int32_t *lines = malloc((count ? count : 1) * sizeof(*lines));
	size_t n = 0, unique = 0;

	if (!lines)
		return -ENOMEM;
	for (size_t i = 0; i < count; i++)
		if (ranges[i].line >= 0)
			lines[n++] = ranges[i].line;
	qsort(lines, n, sizeof(*lines), compare_i32);
	for (size_t i = 0; i < n; i++)
		if (unique == 0 || lines[unique - 1] != lines[i])
			lines[unique++] = lines[i];
	*lines_out = lines;
	*nlines_out = unique;
	return 0;
}
