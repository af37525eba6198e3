// SPDX-License-Identifier: MIT
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "procmaps.h"

static const char maps_text[] =
	"00400000-0041f000 r--p 00000000 fe:01 1234   /usr/bin/python3.11\n"
	"0041f000-006d2000 r-xp 0001f000 fe:01 1234   /usr/bin/python3.11\n"
	"7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n"
	"7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0    [stack]\n"
	"7f1000000000-7f1000001000 r--p 00000000 fe:01 99   /tmp/with space (deleted)\n";

static void test_parses_file_and_anonymous_mappings(void **state)
{
	struct proc_maps maps;

	(void)state;
	assert_int_equal(proc_maps_parse(maps_text, strlen(maps_text), &maps), 0);
	assert_int_equal(maps.count, 5);
	assert_int_equal(maps.entries[1].start, 0x41f000);
	assert_int_equal(maps.entries[1].offset, 0x1f000);
	assert_int_equal(maps.entries[1].dev_major, 0xfe);
	assert_int_equal(maps.entries[1].dev_minor, 1);
	assert_int_equal(maps.entries[1].inode, 1234);
	assert_string_equal(maps.entries[1].perms, "r-xp");
	assert_string_equal(maps.entries[1].path, "/usr/bin/python3.11");
	assert_string_equal(maps.entries[2].path, "");
	assert_string_equal(maps.entries[3].path, "[stack]");
	assert_string_equal(maps.entries[4].path, "/tmp/with space (deleted)");
	proc_maps_free(&maps);
}

static void test_find_returns_containing_mapping(void **state)
{
	struct proc_maps maps;

	(void)state;
	assert_int_equal(proc_maps_parse(maps_text, strlen(maps_text), &maps), 0);
	assert_ptr_equal(proc_maps_find(&maps, 0x420000), &maps.entries[1]);
	assert_null(proc_maps_find(&maps, 0x41f000 - 0x100000));
	proc_maps_free(&maps);
}

static void test_garbage_line_is_rejected(void **state)
{
	static const char bad[] = "hello world\n";
	struct proc_maps maps;

	(void)state;
	assert_int_equal(proc_maps_parse(bad, strlen(bad), &maps), -EINVAL);
	assert_int_equal(maps.count, 0);
}

static void test_end_before_start_is_rejected(void **state)
{
	static const char bad[] = "2000-1000 r--p 00000000 00:00 0\n";
	struct proc_maps maps;

	(void)state;
	assert_int_equal(proc_maps_parse(bad, strlen(bad), &maps), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parses_file_and_anonymous_mappings),
		cmocka_unit_test(test_find_returns_containing_mapping),
		cmocka_unit_test(test_garbage_line_is_rejected),
		cmocka_unit_test(test_end_before_start_is_rejected),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
