// SPDX-License-Identifier: MIT
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "py_offsets.h"

static void version(int minor, struct py_version *v)
{
	py_version_from_hex(0x030000F0u | (uint32_t)minor << 16, v);
}

/* A _Py_DebugOffsets head: cookie, version, free_threaded. */
static void head(uint8_t *raw, uint32_t hex, uint64_t free_threaded)
{
	uint64_t v = hex;

	memset(raw, 0, PY_DEBUG_OFFSETS_MAX);
	memcpy(raw, PY_DEBUG_OFFSETS_COOKIE, 8);
	memcpy(raw + 8, &v, 8);
	memcpy(raw + 16, &free_threaded, 8);
}

static void test_version_hex_decodes(void **state)
{
	struct py_version v;

	(void)state;
	py_version_from_hex(0x030b02f0, &v);
	assert_int_equal(v.major, 3);
	assert_int_equal(v.minor, 11);
	assert_int_equal(v.micro, 2);
	assert_int_equal(v.release_level, 0xf);
}

static void test_tables_exist_for_311_and_312_only(void **state)
{
	struct py_version v;
	struct py_offsets off;

	(void)state;
	version(11, &v);
	assert_true(py_offsets_have_table(&v));
	assert_int_equal(py_offsets_from_table(&v, &off), 0);
	assert_false(py_offsets_untested(&v));
	version(12, &v);
	assert_true(py_offsets_untested(&v));
	version(13, &v);
	assert_false(py_offsets_have_table(&v));
	version(10, &v);
	assert_int_equal(py_offsets_from_table(&v, &off), -ENOTSUP);
}

static void test_bad_cookie_is_rejected(void **state)
{
	uint8_t raw[PY_DEBUG_OFFSETS_MAX];
	struct py_offsets off;
	struct py_version v;
	bool ft;

	(void)state;
	version(13, &v);
	head(raw, 0x030d0ff0, 0);
	raw[0] = 'X';
	assert_int_equal(py_offsets_from_debug(&v, raw, sizeof(raw), &off, &ft), -EINVAL);
}

static void test_version_mismatch_is_rejected(void **state)
{
	uint8_t raw[PY_DEBUG_OFFSETS_MAX];
	struct py_offsets off;
	struct py_version v;
	bool ft;

	(void)state;
	version(13, &v);
	head(raw, 0x030e08f0, 0);	/* a 3.14 blob in a "3.13" process */
	assert_int_equal(py_offsets_from_debug(&v, raw, sizeof(raw), &off, &ft), -EINVAL);
}

static void test_free_threaded_build_is_refused(void **state)
{
	uint8_t raw[PY_DEBUG_OFFSETS_MAX];
	struct py_offsets off;
	struct py_version v;
	bool ft = false;

	(void)state;
	version(14, &v);
	head(raw, 0x030e08f0, 1);
	assert_int_equal(py_offsets_from_debug(&v, raw, sizeof(raw), &off, &ft), -ENOTSUP);
	assert_true(ft);
}

static void test_short_or_garbage_input_is_rejected(void **state)
{
	uint8_t raw[PY_DEBUG_OFFSETS_MAX];
	struct py_offsets off;
	struct py_version v;
	bool ft;

	(void)state;
	version(13, &v);
	head(raw, 0x030d0ff0, 0);
	for (size_t len = 0; len < 64; len++)
		assert_int_not_equal(py_offsets_from_debug(&v, raw, len, &off, &ft), 0);
	/* All offsets zero: implausible, never accepted. */
	assert_int_not_equal(py_offsets_from_debug(&v, raw, sizeof(raw), &off, &ft), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_version_hex_decodes),
		cmocka_unit_test(test_tables_exist_for_311_and_312_only),
		cmocka_unit_test(test_bad_cookie_is_rejected),
		cmocka_unit_test(test_version_mismatch_is_rejected),
		cmocka_unit_test(test_free_threaded_build_is_refused),
		cmocka_unit_test(test_short_or_garbage_input_is_rejected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
