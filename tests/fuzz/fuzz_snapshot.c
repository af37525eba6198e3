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
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
	json_t *snap, *names = NULL;

	if (size < HEADER_LEN + sizeof(*cap))
		return 0;
	memset(&pp, 0, sizeof(pp));
	py_version_from_hex(data[0] & 1 ? 0x030c00f0 : 0x030b00f0, &v);
	if (py_offsets_from_table(&v, &pp.offsets) != 0)
		abort();
	memcpy(&fs.base, data + 8, 8);
	/* A copy: the decoder may keep nothing of it, and it must be aligned. */
	cap = malloc(sizeof(*cap));
	memcpy(cap, data + HEADER_LEN, sizeof(*cap));
	fs.mem = data + HEADER_LEN + sizeof(*cap);
	fs.len = size - HEADER_LEN - sizeof(*cap);
	pp.reader.read = fake_read;
	pp.reader.ctx = &fs;
	pp.pid = -1;	/* no thread name to read */
	p.line = data[1] & 1 ? 7 : 0;
	p.redactor = &r;
	if (data[1] & 4) {
		names = json_pack("[s,s]", "a", "password");
		p.args_filter = p.locals_filter = names;
	}
	snapshot_target_init(&t, &pp, fs.base);
	snap = snapshot_build(&t, &p, cap, sizeof(*cap), data[1] & 2 ? cap : NULL,
			      data[1] & 2 ? sizeof(*cap) : 0);
	json_decref(snap);
	json_decref(names);
	snapshot_target_free(&t);
	free(cap);
	return 0;
}
