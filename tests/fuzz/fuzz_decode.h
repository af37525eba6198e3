/* SPDX-License-Identifier: MIT */
/*
 * What the snapshot harnesses share: one capture decoded as the agent would,
 * against target memory mapped at base. header is the harness input's first
 * two bytes: [0] even 3.11 table, odd 3.12; [1] bit 0 line probe, bit 1
 * paired with itself as the call's end, bit 2 names filters.
 */
#ifndef PYDI_FUZZ_DECODE_H
#define PYDI_FUZZ_DECODE_H

#include <stdint.h>
#include <stdlib.h>

#include "fake_space.h"
#include "snapshot.h"

static void fuzz_decode(const uint8_t header[2], const struct pyprobe_capture *cap,
			size_t cap_size, uint64_t base, const uint8_t *mem, size_t len)
{
	static struct pyproc pp;
	static struct snapshot_target t;
	struct fake_space fs = { .base = base, .mem = mem, .len = len };
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

	memset(&pp, 0, sizeof(pp));
	py_version_from_hex(header[0] & 1 ? 0x030c00f0 : 0x030b00f0, &v);
	if (py_offsets_from_table(&v, &pp.offsets) != 0)
		abort();
	pp.reader.read = fake_read;
	pp.reader.ctx = &fs;
	pp.pid = -1;	/* no thread name to read */
	p.line = header[1] & 1 ? 7 : 0;
	p.redactor = &r;
	if (header[1] & 4) {
		names = json_pack("[s,s]", "a", "password");
		p.args_filter = p.locals_filter = names;
	}
	snapshot_target_init(&t, &pp, fs.base);
	snap = snapshot_build(&t, &p, cap, cap_size, header[1] & 2 ? cap : NULL,
			      header[1] & 2 ? cap_size : 0);
	json_decref(snap);
	json_decref(names);
	snapshot_target_free(&t);
}

#endif /* PYDI_FUZZ_DECODE_H */
