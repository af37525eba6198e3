/* SPDX-License-Identifier: MIT */
/*
 * Captures from BPF turned into the snapshot model of ADOT's debugger
 * (snake_case, as its _snapshot_models.py emits): captures.entry.arguments,
 * captures.return.return_value / throwable, captures.lines["N"].locals,
 * stack[] of {function, file_path, line_number}, and values encoded with
 * type, value, fields, elements, entries, is_null, not_captured_reason,
 * truncated, size.
 */
#ifndef PYDI_SNAPSHOT_H
#define PYDI_SNAPSHOT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "code_cache.h"
#include "pyprobe.h"
#include "pyproc.h"
#include "redact.h"

struct snapshot_limits {
	unsigned int max_string;	/* MaxStringLength */
	unsigned int max_width;		/* MaxCollectionWidth */
	unsigned int max_depth;		/* MaxObjectDepth */
	unsigned int max_fields;	/* MaxFieldsPerObject */
	unsigned int max_frames;	/* MaxStackFrames */
};

#define TYPE_CACHE_SLOTS 256
#define THREAD_CACHE_SLOTS 64

/* What decoding needs to know about one target process. */
struct snapshot_target {
	struct pyproc *pp;
	struct code_cache codes;
	uint64_t true_addr;
	struct {
		uint64_t type;
		char name[96];
	} types[TYPE_CACHE_SLOTS];
	struct thread_name {
		uint32_t tid;
		uint64_t read_ns;	/* when comm was read: names can change */
		char name[16];		/* TASK_COMM_LEN */
	} threads[THREAD_CACHE_SLOTS];
};

struct snapshot_probe {
	const char *probe_id;
	const char *location_hash;		/* NULL: left out */
	const char *instrumentation_type;	/* "BREAKPOINT" or "PROBE" */
	const char *module;
	const char *qualname;
	const char *file_path;
	int line;				/* 0: function probe */
	bool capture_args;
	bool capture_locals;
	bool capture_return;
	bool capture_stack;
	json_t *args_filter;			/* array of names; NULL = all */
	json_t *locals_filter;
	struct snapshot_limits limits;
	const struct redactor *redactor;
};

void snapshot_target_init(struct snapshot_target *t, struct pyproc *pp,
			  uint64_t true_addr);
void snapshot_target_free(struct snapshot_target *t);

/*
 * One snapshot from an entry or line capture and, for function probes, the
 * matching return/exception capture (NULL if the call has not returned, e.g.
 * evicted). Returns a new JSON object or NULL on allocation failure.
 */
json_t *snapshot_build(struct snapshot_target *t, const struct snapshot_probe *p,
		       const struct pyprobe_capture *first, size_t first_size,
		       const struct pyprobe_capture *ret, size_t ret_size);

#endif /* PYDI_SNAPSHOT_H */
