// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include <string.h>

#include "call_pairs.h"
#include "clock.h"

static void flush(struct call_pairs *cp, size_t i, const struct pyprobe_capture *end,
		  size_t end_size, call_pair_fn fn, void *ctx)
{
	struct pyprobe_capture *first = cp->calls[i].cap;

	cp->calls[i].cap = NULL;
	fn(ctx, first, cp->calls[i].size, end, end_size);
	free(first);
}

void call_pairs_add(struct call_pairs *cp, bool pairs_return,
		    const struct pyprobe_capture *cap, size_t size,
		    call_pair_fn fn, void *ctx)
{
	size_t at = CALL_PAIRS_MAX;

	if (cap->event == PYPROBE_EV_LINE ||
	    (cap->event == PYPROBE_EV_ENTRY && !pairs_return)) {
		fn(ctx, cap, size, NULL, 0);
		return;
	}
	if (cap->event != PYPROBE_EV_ENTRY) {
		for (size_t i = 0; i < CALL_PAIRS_MAX; i++)
			if (cp->calls[i].cap && cp->calls[i].cap->frame == cap->frame &&
			    cp->calls[i].cap->tid == cap->tid) {
				flush(cp, i, cap, size, fn, ctx);
				return;
			}
		return;	/* an end whose entry BPF did not capture */
	}
	for (size_t i = 0; i < CALL_PAIRS_MAX && at == CALL_PAIRS_MAX; i++)
		if (!cp->calls[i].cap)
			at = i;
	if (at == CALL_PAIRS_MAX) {
		/* Too many calls in flight: the oldest goes out alone. */
		size_t oldest = 0;

		for (size_t i = 1; i < CALL_PAIRS_MAX; i++)
			if (cp->calls[i].cap->ts_ns < cp->calls[oldest].cap->ts_ns)
				oldest = i;
		flush(cp, oldest, NULL, 0, fn, ctx);
		at = oldest;
	}
	cp->calls[at].cap = malloc(size);
	if (cp->calls[at].cap) {
		memcpy(cp->calls[at].cap, cap, size);
		cp->calls[at].size = size;
	}
}

void call_pairs_evict(struct call_pairs *cp, bool all, call_pair_fn fn, void *ctx)
{
	uint64_t now = monotonic_ns();

	for (size_t i = 0; i < CALL_PAIRS_MAX; i++)
		if (cp->calls[i].cap &&
		    (all || now - cp->calls[i].cap->ts_ns > CALL_PAIRS_EVICT_NS))
			flush(cp, i, NULL, 0, fn, ctx);
}

bool call_pairs_empty(const struct call_pairs *cp)
{
	for (size_t i = 0; i < CALL_PAIRS_MAX; i++)
		if (cp->calls[i].cap)
			return false;
	return true;
}

void call_pairs_clear(struct call_pairs *cp)
{
	for (size_t i = 0; i < CALL_PAIRS_MAX; i++) {
		free(cp->calls[i].cap);
		cp->calls[i].cap = NULL;
	}
}
