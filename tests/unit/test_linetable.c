// SPDX-License-Identifier: MIT
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "linetable.h"

/*
 * co_linetable and co_lines() of this function under CPython 3.11.2:
 *
 * 1 def sample(a, b=2, *args, **kw):
 * 2     x = a + b
 * 3
 * 4     # comment
 * 5     for i in range(3):
 * 6         x += i
 * 7     try:
 * 8         y = x / 0
 * 9     except ZeroDivisionError:
 * 10        y = None
 * 11    return (x,
 * 12            y)
 */
static const uint8_t sample_table[] = {
	128, 0, 216, 8, 9, 136, 65, 137, 5, 128, 65, 245, 6, 0, 14, 19, 144,
	49, 137, 88, 140, 88, 240, 0, 1, 5, 15, 240, 0, 1, 5, 15, 136, 1, 216,
	8, 9, 136, 81, 137, 6, 136, 1, 136, 1, 240, 2, 3, 5, 17, 216, 12, 13,
	144, 1, 137, 69, 136, 1, 136, 1, 248, 221, 11, 28, 240, 0, 1, 5, 17,
	240, 0, 1, 5, 17, 240, 0, 1, 5, 17, 216, 12, 16, 136, 1, 136, 1, 136,
	1, 240, 3, 1, 5, 17, 248, 248, 248, 224, 12, 13, 216, 12, 13, 240, 3,
	1, 12, 15, 240, 0, 1, 5, 15,
};

static const struct line_range sample_lines[] = {
	{0, 2, 1}, {2, 4, 2}, {4, 6, 2}, {6, 10, 2}, {10, 12, 2}, {12, 24, 5},
	{24, 26, 5}, {26, 30, 5}, {30, 40, 5}, {40, 42, 5}, {42, 44, 5},
	{44, 46, 5}, {46, 48, 6}, {48, 50, 6}, {50, 54, 6}, {54, 56, 6},
	{56, 58, 6}, {58, 60, 7}, {60, 62, 8}, {62, 64, 8}, {64, 68, 8},
	{68, 70, 8}, {70, 72, 8}, {72, 74, -1}, {74, 86, 9}, {86, 88, 9},
	{88, 90, 9}, {90, 92, 9}, {92, 94, 10}, {94, 96, 10}, {96, 98, 10},
	{98, 100, 10}, {100, 102, 9}, {102, 104, -1}, {104, 106, -1},
	{106, 108, -1}, {108, 110, 11}, {110, 112, 12}, {112, 114, 11},
	{114, 116, 11},
};

static void test_decodes_like_co_lines(void **state)
{
	struct line_range *ranges;
	size_t count;

	(void)state;
	assert_int_equal(linetable_decode(sample_table, sizeof(sample_table), 1,
					  &ranges, &count), 0);
	assert_int_equal(count, sizeof(sample_lines) / sizeof(sample_lines[0]));
	for (size_t i = 0; i < count; i++) {
		assert_int_equal(ranges[i].start, sample_lines[i].start);
		assert_int_equal(ranges[i].end, sample_lines[i].end);
		assert_int_equal(ranges[i].line, sample_lines[i].line);
	}
	free(ranges);
}

static void test_blank_and_comment_lines_are_not_executable(void **state)
{
	static const int32_t expected[] = {1, 2, 5, 6, 7, 8, 9, 10, 11, 12};
	struct line_range *ranges;
	int32_t *lines;
	size_t count, nlines;

	(void)state;
	assert_int_equal(linetable_decode(sample_table, sizeof(sample_table), 1,
					  &ranges, &count), 0);
	assert_int_equal(linetable_lines(ranges, count, &lines, &nlines), 0);
	assert_int_equal(nlines, sizeof(expected) / sizeof(expected[0]));
	for (size_t i = 0; i < nlines; i++)
		assert_int_equal(lines[i], expected[i]);
	free(lines);
	free(ranges);
}

static void test_no_location_entry_has_no_line(void **state)
{
	/* kind 15 (no location), 3 code units */
	static const uint8_t table[] = { 0x80 | 15 << 3 | 2 };
	struct line_range *ranges;
	size_t count;

	(void)state;
	assert_int_equal(linetable_decode(table, sizeof(table), 7, &ranges,
					  &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(ranges[0].start, 0);
	assert_int_equal(ranges[0].end, 6);
	assert_int_equal(ranges[0].line, -1);
	free(ranges);
}

static void test_long_form_negative_delta(void **state)
{
	/* kind 13 (no columns), delta +5 (zigzag 10); then kind 13 delta -3
	 * (zigzag 7) */
	static const uint8_t table[] = { 0x80 | 13 << 3, 10, 0x80 | 13 << 3, 7 };
	struct line_range *ranges;
	size_t count;

	(void)state;
	assert_int_equal(linetable_decode(table, sizeof(table), 100, &ranges,
					  &count), 0);
	assert_int_equal(count, 2);
	assert_int_equal(ranges[0].line, 105);
	assert_int_equal(ranges[1].line, 102);
	free(ranges);
}

static void test_multi_chunk_varint(void **state)
{
	/* delta +100: zigzag 200 = 0b11_001000 -> chunks 8|0x40, 3 */
	static const uint8_t table[] = { 0x80 | 13 << 3, 8 | 0x40, 3 };
	struct line_range *ranges;
	size_t count;

	(void)state;
	assert_int_equal(linetable_decode(table, sizeof(table), 1, &ranges,
					  &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(ranges[0].line, 101);
	free(ranges);
}

static void test_truncated_varint_is_malformed(void **state)
{
	static const uint8_t table[] = { 0x80 | 13 << 3, 8 | 0x40 };
	struct line_range *ranges;
	size_t count;

	(void)state;
	assert_int_equal(linetable_decode(table, sizeof(table), 1, &ranges,
					  &count), -EINVAL);
}

static void test_table_not_starting_an_entry_is_malformed(void **state)
{
	static const uint8_t table[] = { 0x10, 0x80 };
	struct line_range *ranges;
	size_t count;

	(void)state;
	assert_int_equal(linetable_decode(table, sizeof(table), 1, &ranges,
					  &count), -EINVAL);
}

static void test_empty_table_has_no_ranges(void **state)
{
	struct line_range *ranges;
	size_t count;

	(void)state;
	assert_int_equal(linetable_decode(NULL, 0, 1, &ranges, &count), 0);
	assert_int_equal(count, 0);
	free(ranges);
}

static void test_merge_joins_adjacent_same_line_ranges(void **state)
{
	struct line_range ranges[] = {
		{0, 2, 1}, {2, 4, 2}, {4, 6, 2}, {6, 8, -1}, {8, 10, -1}, {10, 12, 2},
	};
	size_t count = 6;

	(void)state;
	linetable_merge(ranges, &count);
	assert_int_equal(count, 4);
	assert_int_equal(ranges[1].start, 2);
	assert_int_equal(ranges[1].end, 6);
	assert_int_equal(ranges[2].line, -1);
	assert_int_equal(ranges[2].end, 10);
	assert_int_equal(ranges[3].line, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decodes_like_co_lines),
		cmocka_unit_test(test_blank_and_comment_lines_are_not_executable),
		cmocka_unit_test(test_no_location_entry_has_no_line),
		cmocka_unit_test(test_long_form_negative_delta),
		cmocka_unit_test(test_multi_chunk_varint),
		cmocka_unit_test(test_truncated_varint_is_malformed),
		cmocka_unit_test(test_table_not_starting_an_entry_is_malformed),
		cmocka_unit_test(test_empty_table_has_no_ranges),
		cmocka_unit_test(test_merge_joins_adjacent_same_line_ranges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
