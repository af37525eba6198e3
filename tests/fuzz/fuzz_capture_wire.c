// SPDX-License-Identifier: MIT
/*
 * An event as it comes off the ring buffer (every count in it is BPF's word,
 * and BPF read them from target memory) spread by capture_expand() and, if
 * it holds together, decoded as the agent would. Input: a 16-byte header,
 * the event, then memory.
 *   u8  version: even 3.11 table, odd 3.12
 *   u8  probe: bit 0 line probe, bit 1 paired with itself as the call's end
 *   u16 event size (little-endian), at most what follows the header
 *   u8[4] unused
 *   u64 base: where the memory after the event is mapped
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "capture_wire.h"
#include "fake_space.h"
#include "snapshot.h"

#define HEADER_LEN 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pyproc pp;
	static struct snapshot_target t;
	struct fake_space fs;
	struct pyprobe_capture *cap;
	struct py_version v;
	struct snapshot_probe p = {
		.probe_id = "fuzz", .location_hash = "h", .instrumentation_type = "BREAKPOINT",
		.module = "m", .qualname = "C.f", .file_path = "m.py",
		.capture_args = true, .capture_locals = true, .capture_return = true,
		.capture_stack = true,
		.limits = { .max_string = 255, .max_width = 20, .max_depth = 3,
			    .max_fields = 20, .max_frames = 20 },
	};
	struct redactor r = { 0 };
	size_t ev_size;
	uint8_t *ev;
	ssize_t cap_size;
	json_t *snap;

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
	if (cap_size < 0) {
		free(cap);
		return 0;
	}
	if ((size_t)cap_size != offsetof(struct pyprobe_capture, data) + cap->data_len)
		abort();

	memset(&pp, 0, sizeof(pp));
	py_version_from_hex(data[0] & 1 ? 0x030c00f0 : 0x030b00f0, &v);
	if (py_offsets_from_table(&v, &pp.offsets) != 0)
		abort();
	memcpy(&fs.base, data + 8, 8);
	fs.mem = data + HEADER_LEN + ev_size;
	fs.len = size - HEADER_LEN - ev_size;
	pp.reader.read = fake_read;
	pp.reader.ctx = &fs;
	pp.pid = -1;	/* no thread name to read */
	p.line = data[1] & 1 ? 7 : 0;
	p.redactor = &r;
	snapshot_target_init(&t, &pp, fs.base);
	snap = snapshot_build(&t, &p, cap, (size_t)cap_size, data[1] & 2 ? cap : NULL,
			      data[1] & 2 ? (size_t)cap_size : 0);
	json_decref(snap);
	snapshot_target_free(&t);
	free(cap);
	return 0;
}
