// SPDX-License-Identifier: MIT
/* di_parse_list_response: one list-instrumentation-configurations page. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "di_api.h"

struct parsed {
	int ret;
	json_t *configs;
	bool changed;
	char *next_token;
	unsigned int sync_interval_s;
	unsigned int skipped;
	char err[256];
};

static struct parsed parse(const char *body)
{
	struct parsed p;

	memset(&p, 0, sizeof(p));
	p.ret = di_parse_list_response(body, strlen(body), &p.configs,
				       &p.changed, &p.next_token,
				       &p.sync_interval_s, &p.skipped, p.err,
				       sizeof(p.err));
	return p;
}

static void parsed_free(struct parsed *p)
{
	json_decref(p->configs);
	free(p->next_token);
}

static void assert_rejected(const char *body, const char *reason)
{
	struct parsed p = parse(body);

	assert_int_equal(p.ret, -EINVAL);
	assert_null(p.configs);
	assert_null(p.next_token);
	assert_non_null(strstr(p.err, reason));
}

static void test_object_configuration_data_is_kept(void **state)
{
	struct parsed p;
	json_t *c;

	(void)state;
	p = parse("{\"Changed\":true,\"LatestConfigurations\":[{\"LocationHash\":\"h1\","
		  "\"ConfigurationData\":{\"Location\":{\"MethodName\":\"f\"}}}]}");
	assert_int_equal(p.ret, 0);
	assert_true(p.changed);
	assert_int_equal(json_array_size(p.configs), 1);
	c = json_array_get(p.configs, 0);
	assert_string_equal(json_string_value(json_object_get(c, "LocationHash")), "h1");
	assert_string_equal(json_string_value(json_object_get(json_object_get(
		json_object_get(c, "ConfigurationData"), "Location"), "MethodName")), "f");
	assert_null(p.next_token);
	assert_int_equal(p.skipped, 0);
	parsed_free(&p);
}

static void test_string_configuration_data_is_parsed(void **state)
{
	struct parsed p;
	json_t *data;

	(void)state;
	p = parse("{\"LatestConfigurations\":[{\"LocationHash\":\"h1\","
		  "\"ConfigurationData\":\"{\\\"foo\\\": 1}\"}]}");
	assert_int_equal(p.ret, 0);
	data = json_object_get(json_array_get(p.configs, 0), "ConfigurationData");
	assert_true(json_is_object(data));
	assert_int_equal(json_integer_value(json_object_get(data, "foo")), 1);
	parsed_free(&p);
}

static void test_bad_entries_are_skipped_and_counted(void **state)
{
	struct parsed p;

	(void)state;
	p = parse("{\"LatestConfigurations\":["
		  "{\"LocationHash\":\"bad-json\",\"ConfigurationData\":\"{not json\"},"
		  "{\"LocationHash\":\"not-object\",\"ConfigurationData\":\"[1,2]\"},"
		  "{\"LocationHash\":\"number\",\"ConfigurationData\":5},"
		  "\"a string entry\", 42, null, [],"
		  "{\"LocationHash\":\"ok\",\"ConfigurationData\":\"{}\"}]}");
	assert_int_equal(p.ret, 0);
	assert_int_equal(p.skipped, 7);
	assert_int_equal(json_array_size(p.configs), 1);
	assert_string_equal(json_string_value(json_object_get(
		json_array_get(p.configs, 0), "LocationHash")), "ok");
	parsed_free(&p);
}

static void test_empty_or_null_configuration_data_is_dropped(void **state)
{
	struct parsed p;

	(void)state;
	p = parse("{\"LatestConfigurations\":[{\"LocationHash\":\"a\",\"ConfigurationData\":\"\"},"
		  "{\"LocationHash\":\"b\",\"ConfigurationData\":null}]}");
	assert_int_equal(p.ret, 0);
	assert_int_equal(json_array_size(p.configs), 2);
	assert_null(json_object_get(json_array_get(p.configs, 0), "ConfigurationData"));
	assert_null(json_object_get(json_array_get(p.configs, 1), "ConfigurationData"));
	parsed_free(&p);
}

static void test_null_attribute_filters_become_empty_list(void **state)
{
	struct parsed p;
	json_t *f;

	(void)state;
	p = parse("{\"LatestConfigurations\":[{\"LocationHash\":\"a\",\"AttributeFilters\":null}]}");
	assert_int_equal(p.ret, 0);
	f = json_object_get(json_array_get(p.configs, 0), "AttributeFilters");
	assert_true(json_is_array(f));
	assert_int_equal(json_array_size(f), 0);
	parsed_free(&p);
}

static void test_changed_false_and_absent(void **state)
{
	struct parsed p;

	(void)state;
	p = parse("{\"Changed\":false,\"SyncedAt\":123.0}");
	assert_int_equal(p.ret, 0);
	assert_false(p.changed);
	assert_int_equal(json_array_size(p.configs), 0);
	parsed_free(&p);

	/* ADOT: a response without Changed is a changed list */
	p = parse("{\"LatestConfigurations\":[]}");
	assert_int_equal(p.ret, 0);
	assert_true(p.changed);
	parsed_free(&p);

	p = parse("{}");
	assert_int_equal(p.ret, 0);
	assert_true(p.changed);
	assert_int_equal(json_array_size(p.configs), 0);
	parsed_free(&p);
}

static void test_pages_carry_next_token(void **state)
{
	struct parsed p;

	(void)state;
	p = parse("{\"Changed\":true,\"NextToken\":\"page-2\",\"LatestConfigurations\":"
		  "[{\"LocationHash\":\"a\"},{\"LocationHash\":\"b\"}]}");
	assert_int_equal(p.ret, 0);
	assert_string_equal(p.next_token, "page-2");
	assert_int_equal(json_array_size(p.configs), 2);
	parsed_free(&p);

	/* the last page: no token, a null one, or an empty one */
	p = parse("{\"LatestConfigurations\":[{\"LocationHash\":\"c\"}]}");
	assert_null(p.next_token);
	parsed_free(&p);
	p = parse("{\"NextToken\":null}");
	assert_int_equal(p.ret, 0);
	assert_null(p.next_token);
	parsed_free(&p);
	p = parse("{\"NextToken\":\"\"}");
	assert_int_equal(p.ret, 0);
	assert_null(p.next_token);
	parsed_free(&p);
}

static void test_sync_interval(void **state)
{
	struct parsed p;

	(void)state;
	p = parse("{\"SyncInterval\":90}");
	assert_int_equal(p.sync_interval_s, 90);
	parsed_free(&p);
	p = parse("{\"NextSyncInterval\":30}");
	assert_int_equal(p.sync_interval_s, 30);
	parsed_free(&p);
	p = parse("{\"SyncInterval\":null,\"NextSyncInterval\":7}");
	assert_int_equal(p.sync_interval_s, 7);
	parsed_free(&p);
	p = parse("{\"SyncInterval\":12.9}");
	assert_int_equal(p.sync_interval_s, 12);
	parsed_free(&p);
	/* not positive: keep the current interval */
	p = parse("{\"SyncInterval\":0}");
	assert_int_equal(p.ret, 0);
	assert_int_equal(p.sync_interval_s, 0);
	parsed_free(&p);
	p = parse("{\"SyncInterval\":-5}");
	assert_int_equal(p.sync_interval_s, 0);
	parsed_free(&p);
	/* an untrusted server cannot stop polling for years */
	p = parse("{\"SyncInterval\":99999999999}");
	assert_int_equal(p.sync_interval_s, 86400);
	parsed_free(&p);
}

static void test_invalid_json_is_rejected(void **state)
{
	(void)state;
	assert_rejected("", "invalid JSON");
	assert_rejected("{\"Changed\":true", "invalid JSON");
	assert_rejected("<html>502 Bad Gateway</html>", "invalid JSON");
	assert_rejected("{\"a\":1} trailing", "invalid JSON");
}

static void test_wrong_types_are_rejected(void **state)
{
	(void)state;
	assert_rejected("[]", "expected an object");
	assert_rejected("null", "expected an object");
	assert_rejected("\"text\"", "expected an object");
	assert_rejected("{\"Changed\":\"yes\"}", "Changed");
	assert_rejected("{\"Changed\":1}", "Changed");
	assert_rejected("{\"LatestConfigurations\":{}}", "LatestConfigurations");
	assert_rejected("{\"LatestConfigurations\":\"[]\"}", "LatestConfigurations");
	assert_rejected("{\"NextToken\":5}", "NextToken");
	assert_rejected("{\"NextToken\":[\"a\"]}", "NextToken");
	assert_rejected("{\"SyncInterval\":\"60\"}", "SyncInterval");
	assert_rejected("{\"SyncInterval\":true}", "SyncInterval");
	assert_rejected("{\"SyncedAt\":{}}", "SyncedAt");
}

static void test_rejection_with_configs_frees_everything(void **state)
{
	(void)state;
	/* valid entries before a bad field must not leak (ASan checks) */
	assert_rejected("{\"NextToken\":\"t\",\"LatestConfigurations\":[{\"LocationHash\":\"a\"}],"
			"\"Changed\":\"x\"}", "Changed");
	assert_rejected("{\"SyncedAt\":5,\"NextToken\":\"t\",\"LatestConfigurations\":7}",
			"LatestConfigurations");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_object_configuration_data_is_kept),
		cmocka_unit_test(test_string_configuration_data_is_parsed),
		cmocka_unit_test(test_bad_entries_are_skipped_and_counted),
		cmocka_unit_test(test_empty_or_null_configuration_data_is_dropped),
		cmocka_unit_test(test_null_attribute_filters_become_empty_list),
		cmocka_unit_test(test_changed_false_and_absent),
		cmocka_unit_test(test_pages_carry_next_token),
		cmocka_unit_test(test_sync_interval),
		cmocka_unit_test(test_invalid_json_is_rejected),
		cmocka_unit_test(test_wrong_types_are_rejected),
		cmocka_unit_test(test_rejection_with_configs_frees_everything),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
