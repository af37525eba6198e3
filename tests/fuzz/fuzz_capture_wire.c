// SPDX-License-Identifier: MIT
/*
 * An event as it comes off the ring buffer (every count in it is BPF's word,
 * and BPF read them from target memory) spread by capture_expand() and, if
 * it holds together, decoded as the agent would. Input: a 16-byte header,
 * the event, then memory.
 *   u8  version: even 3.11 table, odd 3.12
 *   u8  probe: bit 0 line probe, bit 1 paired with itself as the call's end,
 *       bit 2 names filters
 *   u16 event size (little-endian), at most what follows the header
 *   u8[4] unused
 *   u64 base: where the memory after the event is mapped
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture_wire.h"
#include "fuzz_decode.h"

#define HEADER_LEN 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pyprobe_capture *cap;
	size_t ev_size;
	ssize_t cap_size;
	uint64_t base;
	uint8_t *ev;

	if (size < HEADER_LEN)
		return 0;
	ev_size = (size_t)data[2] | (size_t)data[3] << 8;
	if (ev_size > size - HEADER_LEN)
		ev_size = size - HEADER_LEN;
	/* Copies of exactly their size: ASan sees any read past either. */
	ev = malloc(ev_size ? ev_size : 1);
	memcpy(ev, data + HEADER_LEN, ev_size);
	cap = malloc(sizeof(*cap));
	cap_size = capture_expand(ev, ev_size, cap);
	free(ev);
	if (cap_size >= 0) {
		if ((size_t)cap_size != offsetof(struct pyprobe_capture, data) + cap->data_len)
			abort();
		memcpy(&base, data + 8, 8);
		fuzz_decode(data, cap, (size_t)cap_size, base, data + HEADER_LEN + ev_size,
			    size - HEADER_LEN - ev_size);
	}
	free(cap);
	return 0;
}
