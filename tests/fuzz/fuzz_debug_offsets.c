// SPDX-License-Identifier: MIT
/*
 * _Py_DebugOffsets is read from the target's _PyRuntime: any bytes.
 * Input: 1 byte picking the minor (even: 3.13, odd: 3.14), then the raw
 * bytes (as many as the agent would read, PY_DEBUG_OFFSETS_MAX at most).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "py_offsets.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct py_version v;
	struct py_offsets off;
	bool free_threaded;
	uint8_t *raw;

	if (size < 1)
		return 0;
	py_version_from_hex(data[0] & 1 ? 0x030e00f0 : 0x030d00f0, &v);
	data++;
	size--;
	if (size > PY_DEBUG_OFFSETS_MAX)
		size = PY_DEBUG_OFFSETS_MAX;
	/* An exact-size heap copy, so ASan sees any read past raw_len. */
	raw = malloc(size ? size : 1);
	if (!raw)
		return 0;
	memcpy(raw, data, size);
	py_offsets_from_debug(&v, raw, size, &off, &free_threaded);
	free(raw);
	return 0;
}
