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

/* A told end as BPF would have written it for a probe that captures no
 * return value: the header only. */
static void flush_told(struct call_pairs *cp, size_t i, uint64_t ts_ns,
		       call_pair_fn fn, void *ctx)
{
	const struct pyprobe_capture *first = cp->calls[i].cap;
	struct pyprobe_capture end;

	memset(&end, 0, offsetof(struct pyprobe_capture, vars));
	end.slot = first->slot;
	end.tgid = first->tgid;
	end.tid = first->tid;
	end.event = PYPROBE_EV_RETURN;
	end.ts_ns = ts_ns;
	end.frame = first->frame;
	end.code = first->code;
	end.hit = first->hit;
	end.generation = first->generation;
	flush(cp, i, &end, offsetof(struct pyprobe_capture, data), fn, ctx);
}

/* The waiting entry of frame that started last, at or before ts_ns, on
 * thread tid (0, a told end: any thread); CALL_PAIRS_MAX if none. */
static size_t find_entry(const struct call_pairs *cp, uint64_t frame, uint32_t tid,
			 uint64_t ts_ns)
{
	size_t found = CALL_PAIRS_MAX;

	for (size_t i = 0; i < CALL_PAIRS_MAX; i++) {
		const struct pyprobe_capture *c = cp->calls[i].cap;

		if (c && c->frame == frame && (!tid || c->tid == tid) && c->ts_ns <= ts_ns &&
		    (found == CALL_PAIRS_MAX || c->ts_ns > cp->calls[found].cap->ts_ns))
			found = i;
	}
	return found;
}

/* The told end of the call that starts at entry_ts, if it came first:
 * the earliest end of frame at or after it. CALL_PAIRS_EARLY_MAX if none. */
static size_t find_early(const struct call_pairs *cp, uint64_t frame, uint64_t entry_ts)
{
	size_t found = CALL_PAIRS_EARLY_MAX;

	for (size_t i = 0; i < CALL_PAIRS_EARLY_MAX; i++)
		if (cp->early[i].ts_ns && cp->early[i].frame == frame &&
		    cp->early[i].ts_ns >= entry_ts &&
		    (found == CALL_PAIRS_EARLY_MAX ||
		     cp->early[i].ts_ns < cp->early[found].ts_ns))
			found = i;
	return found;
}

void call_pairs_add(struct call_pairs *cp, bool pairs_return,
		    const struct pyprobe_capture *cap, size_t size,
		    call_pair_fn fn, void *ctx)
{
	size_t at = CALL_PAIRS_MAX, early;

	if (cap->event == PYPROBE_EV_LINE ||
	    (cap->event == PYPROBE_EV_ENTRY && !pairs_return)) {
		fn(ctx, cap, size, NULL, 0);
		return;
	}
	if (cap->event != PYPROBE_EV_ENTRY) {
		at = find_entry(cp, cap->frame, cap->tid, cap->ts_ns);
		if (at < CALL_PAIRS_MAX)
			flush(cp, at, cap, size, fn, ctx);
		return;	/* else an end whose entry BPF did not capture */
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
	if (!cp->calls[at].cap)
		return;
	memcpy(cp->calls[at].cap, cap, size);
	cp->calls[at].size = size;
	early = find_early(cp, cap->frame, cap->ts_ns);
	if (early < CALL_PAIRS_EARLY_MAX) {
		uint64_t ts_ns = cp->early[early].ts_ns;

		cp->early[early].ts_ns = 0;
		flush_told(cp, at, ts_ns, fn, ctx);
	}
}

void call_pairs_told_end(struct call_pairs *cp, uint64_t frame, uint64_t ts_ns,
			 call_pair_fn fn, void *ctx)
{
	size_t at = find_entry(cp, frame, 0, ts_ns);
	unsigned int e;

	if (at < CALL_PAIRS_MAX) {
		flush_told(cp, at, ts_ns, fn, ctx);
		return;
	}
	if (!ts_ns)
		return;
	e = cp->early_next++ % CALL_PAIRS_EARLY_MAX;
	cp->early[e].frame = frame;
	cp->early[e].ts_ns = ts_ns;
	cp->early[e].seen_ns = monotonic_ns();
}

void call_pairs_evict(struct call_pairs *cp, bool all, call_pair_fn fn, void *ctx)
{
	uint64_t now = monotonic_ns();

	for (size_t i = 0; i < CALL_PAIRS_MAX; i++)
		if (cp->calls[i].cap &&
		    (all || now - cp->calls[i].cap->ts_ns > CALL_PAIRS_EVICT_NS))
			flush(cp, i, NULL, 0, fn, ctx);
	for (size_t i = 0; i < CALL_PAIRS_EARLY_MAX; i++)
		if (cp->early[i].ts_ns && (all || now - cp->early[i].seen_ns > CALL_PAIRS_EARLY_NS))
			cp->early[i].ts_ns = 0;
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
	memset(cp->early, 0, sizeof(cp->early));
}
