// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "call_pairs.h"

struct seen {
	int n;
	uint64_t first_frame[CALL_PAIRS_MAX * 2];
	uint32_t end_event[CALL_PAIRS_MAX * 2];	/* 0: went out alone */
	uint64_t end_ts[CALL_PAIRS_MAX * 2];
	uint32_t end_tid[CALL_PAIRS_MAX * 2];
};

static void record(void *ctx, const struct pyprobe_capture *first, size_t first_size,
		   const struct pyprobe_capture *end, size_t end_size)
{
	struct seen *s = ctx;

	(void)first_size;
	(void)end_size;
	s->first_frame[s->n] = first->frame;
	s->end_event[s->n] = end ? end->event : 0;
	s->end_ts[s->n] = end ? end->ts_ns : 0;
	s->end_tid[s->n] = end ? end->tid : 0;
	s->n++;
}

static struct pyprobe_capture cap(uint32_t event, uint32_t tid, uint64_t frame, uint64_t ts)
{
	struct pyprobe_capture c;

	memset(&c, 0, sizeof(c));
	c.event = event;
	c.tid = tid;
	c.frame = frame;
	c.ts_ns = ts;
	return c;
}

static void add(struct call_pairs *cp, struct seen *s, struct pyprobe_capture c)
{
	call_pairs_add(cp, true, &c, sizeof(c), record, s);
}

static void test_entry_waits_for_its_return(void **state)
{
	struct call_pairs cp = { 0 };
	struct seen s = { 0 };

	(void)state;
	add(&cp, &s, cap(PYPROBE_EV_ENTRY, 1, 0x100, 1));
	assert_int_equal(s.n, 0);
	add(&cp, &s, cap(PYPROBE_EV_RETURN, 1, 0x100, 2));
	assert_int_equal(s.n, 1);
	assert_int_equal(s.end_event[0], PYPROBE_EV_RETURN);
	call_pairs_clear(&cp);
}

static void test_same_frame_on_another_thread_does_not_pair(void **state)
{
	struct call_pairs cp = { 0 };
	struct seen s = { 0 };

	(void)state;
	add(&cp, &s, cap(PYPROBE_EV_ENTRY, 1, 0x100, 1));
	add(&cp, &s, cap(PYPROBE_EV_EXCEPTION, 2, 0x100, 2));
	assert_int_equal(s.n, 0);
	add(&cp, &s, cap(PYPROBE_EV_EXCEPTION, 1, 0x100, 3));
	assert_int_equal(s.n, 1);
	assert_int_equal(s.end_event[0], PYPROBE_EV_EXCEPTION);
	call_pairs_clear(&cp);
}

static void test_lines_and_unpaired_entries_go_out_at_once(void **state)
{
	struct call_pairs cp = { 0 };
	struct seen s = { 0 };
	struct pyprobe_capture entry = cap(PYPROBE_EV_ENTRY, 1, 0x200, 1);

	(void)state;
	add(&cp, &s, cap(PYPROBE_EV_LINE, 1, 0x100, 1));
	call_pairs_add(&cp, false, &entry, sizeof(entry), record, &s);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.end_event[0], 0);
	assert_int_equal(s.end_event[1], 0);
}

static void test_crowded_out_call_is_the_oldest(void **state)
{
	struct call_pairs cp = { 0 };
	struct seen s = { 0 };

	(void)state;
	/* The oldest is not in the first slot. */
	add(&cp, &s, cap(PYPROBE_EV_ENTRY, 1, 0x1000, 50));
	for (uint64_t i = 1; i < CALL_PAIRS_MAX; i++)
		add(&cp, &s, cap(PYPROBE_EV_ENTRY, 1, 0x1000 + i, i < 5 ? i : 100 + i));
	assert_int_equal(s.n, 0);
	add(&cp, &s, cap(PYPROBE_EV_ENTRY, 1, 0x9999, 1000));
	assert_int_equal(s.n, 1);
	assert_int_equal(s.first_frame[0], 0x1001);
	assert_int_equal(s.end_event[0], 0);
	call_pairs_evict(&cp, true, record, &s);
	assert_int_equal(s.n, CALL_PAIRS_MAX + 1);
}

static void test_end_without_entry_is_dropped(void **state)
{
	struct call_pairs cp = { 0 };
	struct seen s = { 0 };

	(void)state;
	add(&cp, &s, cap(PYPROBE_EV_RETURN, 1, 0x100, 1));
	call_pairs_evict(&cp, true, record, &s);
	assert_int_equal(s.n, 0);
}

static void test_told_end_meets_its_entry(void **state)
{
	struct call_pairs cp = { 0 };
	struct seen s = { 0 };

	(void)state;
	add(&cp, &s, cap(PYPROBE_EV_ENTRY, 7, 0x100, 10));
	call_pairs_told_end(&cp, 0x200, 20, record, &s);
	assert_int_equal(s.n, 0);
	call_pairs_told_end(&cp, 0x100, 20, record, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.end_event[0], PYPROBE_EV_RETURN);
	assert_int_equal(s.end_ts[0], 20);
	assert_int_equal(s.end_tid[0], 7);
	assert_true(call_pairs_empty(&cp));
}

static void test_told_end_read_before_its_entry_waits_for_it(void **state)
{
	struct call_pairs cp = { 0 };
	struct seen s = { 0 };

	(void)state;
	call_pairs_told_end(&cp, 0x100, 20, record, &s);
	assert_int_equal(s.n, 0);
	add(&cp, &s, cap(PYPROBE_EV_ENTRY, 1, 0x100, 10));
	assert_int_equal(s.n, 1);
	assert_int_equal(s.end_ts[0], 20);
	assert_true(call_pairs_empty(&cp));
}

static void test_told_end_of_a_dropped_entry_leaves_the_next_call_alone(void **state)
{
	struct call_pairs cp = { 0 };
	struct seen s = { 0 };

	(void)state;
	/* BPF dropped the entry of the call that ended at 20; the next call
	 * in the same frame starts at 30 and must wait for its own end. */
	call_pairs_told_end(&cp, 0x100, 20, record, &s);
	add(&cp, &s, cap(PYPROBE_EV_ENTRY, 1, 0x100, 30));
	assert_int_equal(s.n, 0);
	call_pairs_told_end(&cp, 0x100, 40, record, &s);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.end_ts[0], 40);
}

static void test_told_end_meets_the_entry_that_started_last(void **state)
{
	struct call_pairs cp = { 0 };
	struct seen s = { 0 };

	(void)state;
	/* The end of the call at 10 was lost; the frame was used again at 30. */
	add(&cp, &s, cap(PYPROBE_EV_ENTRY, 1, 0x100, 10));
	add(&cp, &s, cap(PYPROBE_EV_ENTRY, 1, 0x100, 30));
	call_pairs_told_end(&cp, 0x100, 40, record, &s);
	assert_int_equal(s.n, 1);
	call_pairs_evict(&cp, true, record, &s);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.end_ts[0], 40);
	assert_int_equal(s.end_event[1], 0);	/* the call at 10, alone */
}

static void test_evicted_told_end_pairs_nothing(void **state)
{
	struct call_pairs cp = { 0 };
	struct seen s = { 0 };

	(void)state;
	call_pairs_told_end(&cp, 0x100, 20, record, &s);
	call_pairs_evict(&cp, true, record, &s);
	add(&cp, &s, cap(PYPROBE_EV_ENTRY, 1, 0x100, 10));
	assert_int_equal(s.n, 0);
	call_pairs_clear(&cp);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_entry_waits_for_its_return),
		cmocka_unit_test(test_same_frame_on_another_thread_does_not_pair),
		cmocka_unit_test(test_lines_and_unpaired_entries_go_out_at_once),
		cmocka_unit_test(test_crowded_out_call_is_the_oldest),
		cmocka_unit_test(test_end_without_entry_is_dropped),
		cmocka_unit_test(test_told_end_meets_its_entry),
		cmocka_unit_test(test_told_end_read_before_its_entry_waits_for_it),
		cmocka_unit_test(test_told_end_of_a_dropped_entry_leaves_the_next_call_alone),
		cmocka_unit_test(test_told_end_meets_the_entry_that_started_last),
		cmocka_unit_test(test_evicted_told_end_pairs_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
