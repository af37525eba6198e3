// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "config_dir.h"

static json_t *parse(const char *text, char *err, size_t err_len)
{
	return config_file_parse(text, strlen(text), err, err_len);
}

static void test_single_config_becomes_a_list_of_one(void **state)
{
	char err[256] = "";
	json_t *list = parse("{\"LocationHash\": \"a\"}", err, sizeof(err));

	(void)state;
	assert_non_null(list);
	assert_int_equal(json_array_size(list), 1);
	assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0),
							      "LocationHash")), "a");
	json_decref(list);
}

static void test_array_is_taken_as_is(void **state)
{
	char err[256] = "";
	json_t *list = parse("[{\"LocationHash\": \"a\"}, {\"LocationHash\": \"b\"}]", err,
			     sizeof(err));

	(void)state;
	assert_int_equal(json_array_size(list), 2);
	json_decref(list);
}

static void test_wrapper_service_is_inherited_not_forced(void **state)
{
	char err[256] = "";
	json_t *list = parse("{\"Service\": \"shop\", \"Environment\": \"prod\", \"Configurations\": "
			     "[{\"LocationHash\": \"a\"}, {\"LocationHash\": \"b\", \"Service\": "
			     "\"other\"}]}", err, sizeof(err));

	(void)state;
	assert_int_equal(json_array_size(list), 2);
	assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0),
							      "Service")), "shop");
	assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0),
							      "Environment")), "prod");
	assert_string_equal(json_string_value(json_object_get(json_array_get(list, 1),
							      "Service")), "other");
	json_decref(list);
}

static void test_invalid_json_names_line_and_column(void **state)
{
	char err[256] = "";

	(void)state;
	assert_null(parse("{\n  \"LocationHash\": \"a\",\n  oops\n}", err, sizeof(err)));
	assert_non_null(strstr(err, "line 3"));
}

static void test_scalar_document_is_refused(void **state)
{
	char err[256] = "";

	(void)state;
	assert_null(parse("42", err, sizeof(err)));
	assert_true(err[0] != '\0');
	assert_null(parse("{\"Configurations\": 3}", err, sizeof(err)));
	assert_non_null(strstr(err, "Configurations"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_single_config_becomes_a_list_of_one),
		cmocka_unit_test(test_array_is_taken_as_is),
		cmocka_unit_test(test_wrapper_service_is_inherited_not_forced),
		cmocka_unit_test(test_invalid_json_names_line_and_column),
		cmocka_unit_test(test_scalar_document_is_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
