// SPDX-License-Identifier: MIT
/*
 * The snapshot decoder: one capture as BPF hands it over (every count and
 * pointer in it came from target memory) decoded against a fake address
 * space, through the same struct mem_reader the agent uses. Input: a
 * 16-byte header, a capture, then memory.
 *   u8  version: even 3.11 table, odd 3.12
 *   u8  probe: bit 0 line probe, bit 1 paired with a second capture (the
 *       same bytes as the call's end), bit 2 names filters
 *   u8[6] unused
 *   u64 base: where the memory after the capture is mapped
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_decode.h"

#define HEADER_LEN 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pyprobe_capture *cap;
	uint64_t base;

	if (size < HEADER_LEN + sizeof(*cap))
		return 0;
	memcpy(&base, data + 8, 8);
	/* A copy: the decoder may keep nothing of it, and it must be aligned. */
	cap = malloc(sizeof(*cap));
	memcpy(cap, data + HEADER_LEN, sizeof(*cap));
	fuzz_decode(data, cap, sizeof(*cap), base, data + HEADER_LEN + sizeof(*cap),
		    size - HEADER_LEN - sizeof(*cap));
	free(cap);
	return 0;
}
