// SPDX-License-Identifier: MIT
/*
 * A code object read out of hostile target memory, through the same
 * struct mem_reader the agent uses. Input: a 16-byte header, then memory.
 *   u8  version: even 3.11 table, odd 3.12 (co_lines() merged)
 *   u8[7] unused
 *   u64 base: the address the rest of the input is mapped at; the code
 *       object is at base. Reads outside [base, base + len) fail -EFAULT.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fake_space.h"
#include "pycode.h"

#define HEADER_LEN 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fake_space fs;
	struct mem_reader mr = { .read = fake_read, .ctx = &fs };
	struct py_version v;
	struct py_offsets off;
	struct pycode_info info;

	if (size < HEADER_LEN)
		return 0;
	py_version_from_hex(data[0] & 1 ? 0x030c00f0 : 0x030b00f0, &v);
	if (py_offsets_from_table(&v, &off) != 0)
		abort();
	memcpy(&fs.base, data + 8, 8);
	fs.mem = data + HEADER_LEN;
	fs.len = size - HEADER_LEN;
	if (pycode_read(&mr, &off, fs.base, &info) == 0)
		pycode_free(&info);
	return 0;
}
