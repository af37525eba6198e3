// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pyobj.h"

static void check(uint32_t cp, const char *expected)
{
	char buf[5] = { 0 };
	size_t n = utf8_encode(cp, buf);

	assert_int_equal(n, strlen(expected));
	assert_memory_equal(buf, expected, n);
}

static void test_encodes_each_width(void **state)
{
	(void)state;
	check('A', "A");
	check(0xe9, "\xc3\xa9");
	check(0x20ac, "\xe2\x82\xac");
	check(0x1f600, "\xf0\x9f\x98\x80");
}

static void test_surrogates_and_out_of_range_become_replacement(void **state)
{
	(void)state;
	check(0xd800, "\xef\xbf\xbd");
	check(0x110000, "\xef\xbf\xbd");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_encodes_each_width),
		cmocka_unit_test(test_surrogates_and_out_of_range_become_replacement),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
