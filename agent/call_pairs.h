/* SPDX-License-Identifier: MIT */
/*
 * A function probe's snapshot is its entry and its return (or exception)
 * together: entries wait here for the end of the same call. An end from BPF
 * meets the entry of its thread and frame; an end the helper told (no trap,
 * so no thread as BPF names it) meets the entry of its frame that started
 * last before it (a frame address belongs to one running call at a time).
 * A told end can come before its entry (read from the helper's ring while
 * the entry still sat in the ring buffer): it waits a while for it. Calls
 * that never end (evicted after a while, or crowded out) go out alone.
 */
#ifndef PYDI_CALL_PAIRS_H
#define PYDI_CALL_PAIRS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pyprobe.h"

#define CALL_PAIRS_MAX		64
#define CALL_PAIRS_EVICT_NS	(30ull * 1000000000ull)
#define CALL_PAIRS_EARLY_MAX	64
#define CALL_PAIRS_EARLY_NS	(1000ull * 1000000ull)

struct call_pairs {
	struct {
		struct pyprobe_capture *cap;
		size_t size;
	} calls[CALL_PAIRS_MAX];
	/* Told ends that found no entry yet (ring order: next overwrites). */
	struct {
		uint64_t frame;
		uint64_t ts_ns;		/* 0: free */
		uint64_t seen_ns;	/* when it was told to us */
	} early[CALL_PAIRS_EARLY_MAX];
	unsigned int early_next;
};

/* One snapshot's worth: the first capture, and its end or NULL. */
typedef void (*call_pair_fn)(void *ctx, const struct pyprobe_capture *first,
			     size_t first_size, const struct pyprobe_capture *end,
			     size_t end_size);

/* Route one capture: a line, or an entry of a probe that does not pair,
 * goes out at once; an entry waits (or meets its told end); an end meets its
 * entry. */
void call_pairs_add(struct call_pairs *cp, bool pairs_return,
		    const struct pyprobe_capture *cap, size_t size,
		    call_pair_fn fn, void *ctx);
/* A return the helper told: the call of frame ended at ts_ns. */
void call_pairs_told_end(struct call_pairs *cp, uint64_t frame, uint64_t ts_ns,
			 call_pair_fn fn, void *ctx);
/* Send out alone the entries older than CALL_PAIRS_EVICT_NS (all: every
 * one), and forget told ends that waited CALL_PAIRS_EARLY_NS for theirs. */
void call_pairs_evict(struct call_pairs *cp, bool all, call_pair_fn fn, void *ctx);
/* No entry waits for its end. */
bool call_pairs_empty(const struct call_pairs *cp);
/* Free waiting entries without sending them. */
void call_pairs_clear(struct call_pairs *cp);

#endif /* PYDI_CALL_PAIRS_H */
