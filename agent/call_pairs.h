/* SPDX-License-Identifier: MIT */
/*
 * A function probe's snapshot is its entry and its return (or exception)
 * together: entries wait here for the end of the same call, matched by
 * thread and frame address. Calls that never end (evicted after a while, or
 * crowded out) go out alone.
 */
#ifndef PYDI_CALL_PAIRS_H
#define PYDI_CALL_PAIRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pyprobe.h"

#define CALL_PAIRS_MAX		64
#define CALL_PAIRS_EVICT_NS	(30ull * 1000000000ull)

struct call_pairs {
	struct {
		struct pyprobe_capture *cap;
		size_t size;
	} calls[CALL_PAIRS_MAX];
};

/* One snapshot's worth: the first capture, and its end or NULL. */
typedef void (*call_pair_fn)(void *ctx, const struct pyprobe_capture *first,
			     size_t first_size, const struct pyprobe_capture *end,
			     size_t end_size);

/* Route one capture: a line, or an entry of a probe that does not pair,
 * goes out at once; an entry waits; an end meets its entry. */
void call_pairs_add(struct call_pairs *cp, bool pairs_return,
		    const struct pyprobe_capture *cap, size_t size,
		    call_pair_fn fn, void *ctx);
/* Send out alone the entries older than CALL_PAIRS_EVICT_NS (all: every one). */
void call_pairs_evict(struct call_pairs *cp, bool all, call_pair_fn fn, void *ctx);
bool call_pairs_empty(const struct call_pairs *cp);
/* Free waiting entries without sending them. */
void call_pairs_clear(struct call_pairs *cp);

#endif /* PYDI_CALL_PAIRS_H */
