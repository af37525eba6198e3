// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "redact.h"

static void test_builtin_list_is_large(void **state)
{
	(void)state;
	assert_true(redact_builtin_count() >= 40);
}

static void test_case_and_separators_do_not_matter(void **state)
{
	(void)state;
	assert_true(redact_name(NULL, "password"));
	assert_true(redact_name(NULL, "PassWord"));
	assert_true(redact_name(NULL, "API-Key"));
	assert_true(redact_name(NULL, "api_key"));
	assert_true(redact_name(NULL, "Authorization"));
	assert_true(redact_name(NULL, "db_password"));
	assert_true(redact_name(NULL, "x-csrf-token"));
	assert_false(redact_name(NULL, "order_id"));
	assert_false(redact_name(NULL, "qty"));
	assert_false(redact_name(NULL, "lessons"));	/* not "ssn" inside */
}

static void test_configured_names_and_types(void **state)
{
	struct redactor r = { 0 };

	(void)state;
	assert_false(redact_name(&r, "customer_email"));
	assert_int_equal(redactor_add_name(&r, "Customer-Email"), 0);
	assert_true(redact_name(&r, "customer_email"));
	assert_int_equal(redactor_add_type(&r, "SecretStr"), 0);
	assert_true(redact_type(&r, "SecretStr"));
	assert_false(redact_type(&r, "str"));
	redactor_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_builtin_list_is_large),
		cmocka_unit_test(test_case_and_separators_do_not_matter),
		cmocka_unit_test(test_configured_names_and_types),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
