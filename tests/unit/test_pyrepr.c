// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "pyrepr.h"

static void check_float(double v, const char *expected)
{
	char buf[64];

	py_float_repr(v, buf, sizeof(buf));
	assert_string_equal(buf, expected);
}

/* Expected strings are what CPython's str(float) prints. */
static void test_float_repr_matches_python(void **state)
{
	(void)state;
	check_float(1.0, "1.0");
	check_float(0.1, "0.1");
	check_float(-2.5, "-2.5");
	check_float(1e16, "1e+16");
	check_float(1e15, "1000000000000000.0");
	check_float(1234567.0, "1234567.0");
	check_float(0.0001, "0.0001");
	check_float(0.00001, "1e-05");
	check_float(1.0 / 3, "0.3333333333333333");
	check_float(123456789012345678.0, "1.2345678901234568e+17");
	check_float(0.0, "0.0");
	check_float(28.5, "28.5");
	check_float(1.5e-300, "1.5e-300");
}

static void test_long_repr_of_big_and_negative_numbers(void **state)
{
	/* 2**60 = digits [0, 0, 1] in base 2**30 */
	const uint32_t two60[] = { 0, 0, 1 };
	const uint32_t small[] = { 42 };
	char buf[64];

	(void)state;
	assert_int_equal(py_long_repr(two60, 3, false, buf, sizeof(buf)), 19);
	assert_string_equal(buf, "1152921504606846976");
	py_long_repr(small, 1, true, buf, sizeof(buf));
	assert_string_equal(buf, "-42");
	py_long_repr(NULL, 0, false, buf, sizeof(buf));
	assert_string_equal(buf, "0");
	assert_int_equal(py_long_repr(two60, 3, false, buf, 5), -1);
}

static void test_bytes_repr_escapes(void **state)
{
	char buf[64];

	(void)state;
	assert_true(py_bytes_repr((const uint8_t *)"a\n\x00'", 4, buf, sizeof(buf)));
	assert_string_equal(buf, "b\"a\\n\\x00'\"");
	assert_false(py_bytes_repr((const uint8_t *)"abcdef", 6, buf, 6));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_float_repr_matches_python),
		cmocka_unit_test(test_long_repr_of_big_and_negative_numbers),
		cmocka_unit_test(test_bytes_repr_escapes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
