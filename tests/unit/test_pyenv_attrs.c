// SPDX-License-Identifier: MIT
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "pyenv_attrs.h"

#define ENV(s) s, sizeof(s) - 1

static void test_service_name_variable_wins(void **state)
{
	struct service_identity id;

	(void)state;
	service_identity_parse(ENV("PATH=/bin\0OTEL_RESOURCE_ATTRIBUTES=service.name=fromattrs\0"
				   "OTEL_SERVICE_NAME=checkout\0"), &id);
	assert_string_equal(id.service_name, "checkout");
}

static void test_resource_attributes_give_name_and_environment(void **state)
{
	struct service_identity id;

	(void)state;
	service_identity_parse(ENV("OTEL_RESOURCE_ATTRIBUTES=team=a, service.name=cart ,"
				   "deployment.environment.name=prod%20eu\0"), &id);
	assert_string_equal(id.service_name, "cart");
	assert_string_equal(id.environment, "prod eu");
}

static void test_new_environment_key_wins_over_old(void **state)
{
	struct service_identity id;

	(void)state;
	service_identity_parse(ENV("OTEL_RESOURCE_ATTRIBUTES=deployment.environment=old,"
				   "deployment.environment.name=new\0"), &id);
	assert_string_equal(id.environment, "new");
}

static void test_adot_debugger_flag(void **state)
{
	struct service_identity id;

	(void)state;
	service_identity_parse(ENV("OTEL_AWS_DYNAMIC_INSTRUMENTATION_ENABLED=True\0"), &id);
	assert_true(id.adot_debugger_enabled);
	service_identity_parse(ENV("OTEL_AWS_DYNAMIC_INSTRUMENTATION_ENABLED=false\0"), &id);
	assert_false(id.adot_debugger_enabled);
}

static void test_unterminated_tail_is_ignored(void **state)
{
	struct service_identity id;

	(void)state;
	service_identity_parse("OTEL_SERVICE_NAME=abc", 10, &id);
	assert_string_equal(id.service_name, "");
}

static void test_bad_percent_escape_is_kept(void **state)
{
	char out[32];

	(void)state;
	assert_true(resource_attr_get("k=a%zz%4", "k", out, sizeof(out)));
	assert_string_equal(out, "a%zz%4");
	assert_false(resource_attr_get("k=a", "missing", out, sizeof(out)));
}

struct pairs {
	char text[256];
};

static void collect(void *ctx, const char *key, const char *value)
{
	struct pairs *p = ctx;
	size_t len = strlen(p->text);

	snprintf(p->text + len, sizeof(p->text) - len, "[%s=%s]", key, value);
}

static void test_foreach_decodes_every_pair_and_skips_bad_ones(void **state)
{
	struct pairs p = { "" };

	(void)state;
	resource_attr_foreach("team=a%2Cb, service.name = cart,novalue,=empty,k8s.ns=x=y", collect,
			      &p);
	assert_string_equal(p.text, "[team=a,b][service.name=cart][k8s.ns=x=y]");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_service_name_variable_wins),
		cmocka_unit_test(test_resource_attributes_give_name_and_environment),
		cmocka_unit_test(test_new_environment_key_wins_over_old),
		cmocka_unit_test(test_adot_debugger_flag),
		cmocka_unit_test(test_unterminated_tail_is_ignored),
		cmocka_unit_test(test_bad_percent_escape_is_kept),
		cmocka_unit_test(test_foreach_decodes_every_pair_and_skips_bad_ones),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
