// SPDX-License-Identifier: MIT
/*
 * co_linetable is read out of target memory: any bytes, any co_firstlineno.
 * Input: 4 bytes of first_line (little-endian), then the table.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "linetable.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct line_range *ranges = NULL;
	int32_t *lines = NULL;
	size_t count = 0, nlines = 0;
	int32_t first_line;

	if (size < sizeof(first_line))
		return 0;
	memcpy(&first_line, data, sizeof(first_line));
	data += sizeof(first_line);
	size -= sizeof(first_line);

	if (linetable_decode(data, size, first_line, &ranges, &count) != 0)
		return 0;
	for (size_t i = 0; i < count; i++)
		if (ranges[i].start > ranges[i].end)
			abort();
	linetable_merge(ranges, &count);
	if (linetable_lines(ranges, count, &lines, &nlines) == 0) {
		for (size_t i = 1; i < nlines; i++)
			if (lines[i - 1] >= lines[i])
				abort();	/* promised: distinct, ascending */
		free(lines);
	}
	free(ranges);
	return 0;
}
