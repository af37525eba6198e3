// SPDX-License-Identifier: MIT
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "probe_config.h"

static char err[256];

/* Parse a config given as JSON text; the text must be valid JSON. */
static int parse(const char *text, struct probe_config *c)
{
	json_error_t jerr;
	json_t *j = json_loads(text, 0, &jerr);
	int ret;

	if (!j)
		fail_msg("test config is not JSON: %s", jerr.text);
	err[0] = '\0';
	ret = probe_config_parse(j, c, err, sizeof(err));
	json_decref(j);
	return ret;
}

#define LOC_UNION(extra) \
	"\"Location\":{\"CodeLocation\":{\"Language\":\"Python\"," \
	"\"CodeUnit\":\"app.orders\",\"MethodName\":\"checkout\"" extra "}}"

static void test_union_form_parses_every_field(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{\"LocationHash\":\"abc123\","
		"\"InstrumentationType\":\"BREAKPOINT\",\"SignalType\":\"SNAPSHOT\","
		"\"Location\":{\"CodeLocation\":{\"Language\":\"Python\","
		"\"CodeUnit\":\"app.orders\",\"ClassName\":\"Cart\","
		"\"MethodName\":\"total\",\"FilePath\":\"app/orders.py\","
		"\"LineNumber\":42}},"
		"\"CaptureConfiguration\":{\"CodeCapture\":{"
		"\"CaptureArguments\":[\"items\"],\"CaptureLocals\":[],"
		"\"CaptureReturn\":true,\"CaptureStackTrace\":true,"
		"\"CaptureLimits\":{\"MaxHits\":7,\"MaxStringLength\":50,"
		"\"MaxCollectionWidth\":5,\"MaxCollectionDepth\":2,"
		"\"MaxObjectDepth\":4,\"MaxFieldsPerObject\":6,"
		"\"MaxStackFrames\":8,\"MaxStackTraceSize\":300}}},"
		"\"AttributeFilters\":[{\"service.name\":\"cart\"}],"
		"\"ExpiresAt\":\"2026-03-10T19:34:00Z\"}", &c), 0);
	assert_string_equal(c.id, "abc123");
	assert_int_equal(c.kind, PROBE_KIND_BREAKPOINT);
	assert_true(c.language_python);
	assert_string_equal(c.language, "Python");
	assert_string_equal(c.module, "app.orders");
	assert_string_equal(c.function, "Cart.total");
	assert_string_equal(c.file_path, "app/orders.py");
	assert_int_equal(c.line, 42);
	assert_int_equal(json_array_size(c.capture_arguments), 1);
	assert_string_equal(json_string_value(json_array_get(c.capture_arguments, 0)),
			    "items");
	assert_non_null(c.capture_locals);
	assert_int_equal(json_array_size(c.capture_locals), 0);
	assert_true(c.capture_return);
	assert_true(c.capture_stack);
	assert_int_equal(c.limits.max_hits, 7);
	assert_int_equal(c.limits.max_string, 50);
	assert_int_equal(c.limits.max_width, 5);
	assert_int_equal(c.limits.max_collection_depth, 2);
	assert_int_equal(c.limits.max_object_depth, 4);
	assert_int_equal(c.limits.max_fields, 6);
	assert_int_equal(c.limits.max_frames, 8);
	assert_int_equal(c.limits.max_stack_trace_size, 300);
	assert_true(c.expires_at_ms == 1773171240000LL);
	assert_int_equal(json_array_size(c.attribute_filters), 1);
	assert_int_equal(strlen(c.fingerprint), 16);
	probe_config_free(&c);
}

static void test_legacy_flat_form_parses(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{\"Location\":{\"Language\":\"python\","
		"\"CodeUnit\":\"myapp\",\"MethodName\":\"func\",\"LineNumber\":10},"
		"\"CaptureConfiguration\":{\"CaptureReturn\":true,"
		"\"CaptureLimits\":{\"MaxStringLength\":20}},"
		"\"LocationHash\":\"config-123\"}", &c), 0);
	assert_string_equal(c.id, "config-123");
	assert_string_equal(c.module, "myapp");
	assert_string_equal(c.function, "func");
	assert_int_equal(c.line, 10);
	assert_true(c.capture_return);
	assert_int_equal(c.limits.max_string, 20);
	probe_config_free(&c);
}

static void test_defaults_match_adot(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{" LOC_UNION("") "}", &c), 0);
	assert_int_equal(c.kind, PROBE_KIND_BREAKPOINT);
	assert_string_equal(c.name, "");
	assert_int_equal(c.line, 0);
	assert_null(c.capture_arguments);
	assert_null(c.capture_locals);
	assert_false(c.capture_return);
	assert_false(c.capture_stack);
	assert_int_equal(c.limits.max_hits, 100);
	assert_int_equal(c.limits.max_string, 255);
	assert_int_equal(c.limits.max_width, 20);
	assert_int_equal(c.limits.max_collection_depth, 3);
	assert_int_equal(c.limits.max_object_depth, 3);
	assert_int_equal(c.limits.max_fields, 20);
	assert_int_equal(c.limits.max_frames, 20);
	assert_int_equal(c.limits.max_stack_trace_size, 200);
	assert_true(c.rate == 5.0);
	assert_true(c.expires_at_ms == 0);
	assert_null(c.attribute_filters);
	assert_string_equal(c.service, "");
	assert_string_equal(c.environment, "");
	assert_int_equal(c.pid, 0);
	probe_config_free(&c);
}

static void test_probe_forces_line_zero(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{\"InstrumentationType\":\"probe\","
			       LOC_UNION(",\"LineNumber\":12") "}", &c), 0);
	assert_int_equal(c.kind, PROBE_KIND_PROBE);
	assert_int_equal(c.line, 0);
	probe_config_free(&c);
}

static void test_probe_ignores_expires_at_and_max_hits(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{\"InstrumentationType\":\"PROBE\","
		"\"ExpiresAt\":1700000000," LOC_UNION("") ","
		"\"CaptureConfiguration\":{\"CodeCapture\":{\"CaptureLimits\":"
		"{\"MaxHits\":3}}}}", &c), 0);
	assert_true(c.expires_at_ms == 0);
	assert_int_equal(c.limits.max_hits, 0);	/* unlimited */
	probe_config_free(&c);
}

static void test_invalid_instrumentation_type_is_breakpoint(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{\"InstrumentationType\":\"LOGPOINT\","
			       LOC_UNION(",\"LineNumber\":3") "}", &c), 0);
	assert_int_equal(c.kind, PROBE_KIND_BREAKPOINT);
	assert_int_equal(c.line, 3);
	probe_config_free(&c);
	assert_int_equal(parse("{\"InstrumentationType\":7," LOC_UNION("") "}",
			       &c), 0);
	assert_int_equal(c.kind, PROBE_KIND_BREAKPOINT);
	probe_config_free(&c);
	assert_string_equal(probe_kind_name(PROBE_KIND_PROBE), "PROBE");
	assert_string_equal(probe_kind_name(PROBE_KIND_BREAKPOINT), "BREAKPOINT");
}

static void test_max_hits_clamped_to_1000(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{" LOC_UNION("") ",\"CaptureConfiguration\":"
		"{\"CodeCapture\":{\"CaptureLimits\":{\"MaxHits\":5000}}}}", &c), 0);
	assert_int_equal(c.limits.max_hits, 1000);
	probe_config_free(&c);
}

static void test_limits_below_minimum_clamp_to_minimum(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{" LOC_UNION("") ",\"CaptureConfiguration\":"
		"{\"CodeCapture\":{\"CaptureLimits\":{\"MaxHits\":0,"
		"\"MaxStringLength\":-4,\"MaxStackFrames\":0}}}}", &c), 0);
	assert_int_equal(c.limits.max_hits, 1);
	assert_int_equal(c.limits.max_string, 1);
	assert_int_equal(c.limits.max_frames, 1);
	probe_config_free(&c);
}

static void test_limits_above_maximum_clamp_to_maximum(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{" LOC_UNION("") ",\"CaptureConfiguration\":"
		"{\"CodeCapture\":{\"CaptureLimits\":{\"MaxStringLength\":9999,"
		"\"MaxCollectionWidth\":21,\"MaxCollectionDepth\":6,"
		"\"MaxObjectDepth\":1e9,\"MaxFieldsPerObject\":100,"
		"\"MaxStackFrames\":50,\"MaxStackTraceSize\":1001}}}}", &c), 0);
	assert_int_equal(c.limits.max_string, 255);
	assert_int_equal(c.limits.max_width, 20);
	assert_int_equal(c.limits.max_collection_depth, 5);
	assert_int_equal(c.limits.max_object_depth, 5);
	assert_int_equal(c.limits.max_fields, 20);
	assert_int_equal(c.limits.max_frames, 20);
	assert_int_equal(c.limits.max_stack_trace_size, 1000);
	probe_config_free(&c);
}

static void test_limits_coerce_like_python_int(void **state)
{
	struct probe_config c;

	(void)state;
	/* numeric strings and floats go through int(); bools, junk and
	 * containers give the default */
	assert_int_equal(parse("{" LOC_UNION("") ",\"CaptureConfiguration\":"
		"{\"CodeCapture\":{\"CaptureLimits\":{\"MaxHits\":\" 1_0 \","
		"\"MaxStringLength\":12.9,\"MaxCollectionWidth\":true,"
		"\"MaxCollectionDepth\":\"2.5\",\"MaxObjectDepth\":[1],"
		"\"MaxFieldsPerObject\":null,\"MaxStackFrames\":\"-3\"}}}}", &c), 0);
	assert_int_equal(c.limits.max_hits, 10);
	assert_int_equal(c.limits.max_string, 12);
	assert_int_equal(c.limits.max_width, 20);
	assert_int_equal(c.limits.max_collection_depth, 3);
	assert_int_equal(c.limits.max_object_depth, 3);
	assert_int_equal(c.limits.max_fields, 20);
	assert_int_equal(c.limits.max_frames, 1);
	probe_config_free(&c);
}

static void test_wrong_capture_shapes_fall_back_to_defaults(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{" LOC_UNION("") ",\"CaptureConfiguration\":"
			       "\"not_a_dict\"}", &c), 0);
	assert_null(c.capture_arguments);
	assert_int_equal(c.limits.max_string, 255);
	probe_config_free(&c);
	assert_int_equal(parse("{" LOC_UNION("") ",\"CaptureConfiguration\":"
		"{\"CodeCapture\":{\"CaptureLimits\":\"not_a_dict\"}}}", &c), 0);
	assert_int_equal(c.limits.max_width, 20);
	probe_config_free(&c);
	assert_int_equal(parse("{" LOC_UNION("") ",\"CaptureConfiguration\":"
		"{\"CodeCapture\":[1,2]}}", &c), 0);
	assert_false(c.capture_return);
	probe_config_free(&c);
}

static void test_capture_lists_absent_empty_and_named(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{" LOC_UNION("") ",\"CaptureConfiguration\":"
		"{\"CodeCapture\":{\"CaptureArguments\":[\"a\",3,\"b\",null],"
		"\"CaptureLocals\":[]}}}", &c), 0);
	assert_int_equal(json_array_size(c.capture_arguments), 2);
	assert_string_equal(json_string_value(json_array_get(c.capture_arguments, 1)),
			    "b");
	assert_non_null(c.capture_locals);
	assert_int_equal(json_array_size(c.capture_locals), 0);
	probe_config_free(&c);
}

static void test_capture_list_without_strings_captures_none(void **state)
{
	struct probe_config c;

	(void)state;
	/* [1, 2] names no variable: nothing, not "all" */
	assert_int_equal(parse("{" LOC_UNION("") ",\"CaptureConfiguration\":"
		"{\"CodeCapture\":{\"CaptureArguments\":[1,2]}}}", &c), 0);
	assert_null(c.capture_arguments);
	probe_config_free(&c);
}

static void test_capture_list_present_but_not_a_list_captures_all(void **state)
{
	struct probe_config c;

	(void)state;
	/* ADOT: a present key whose value is not a list (null included) is [] */
	assert_int_equal(parse("{" LOC_UNION("") ",\"CaptureConfiguration\":"
		"{\"CodeCapture\":{\"CaptureArguments\":null,"
		"\"CaptureLocals\":\"x\"}}}", &c), 0);
	assert_non_null(c.capture_arguments);
	assert_int_equal(json_array_size(c.capture_arguments), 0);
	assert_non_null(c.capture_locals);
	assert_int_equal(json_array_size(c.capture_locals), 0);
	probe_config_free(&c);
}

static void test_capture_flags_accept_python_truthy_strings(void **state)
{
	static const struct {
		const char *value;
		bool expect;
	} cases[] = {
		{ "true", true }, { "\"true\"", true }, { "\"TRUE\"", true },
		{ "\"1\"", true }, { "\"Yes\"", true }, { "\"no\"", false },
		{ "\"false\"", false }, { "\"on\"", false }, { "1", true },
		{ "0", false }, { "null", false }, { "[0]", true },
		{ "{}", false }, { "0.0", false },
	};
	char text[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct probe_config c;

		snprintf(text, sizeof(text), "{" LOC_UNION("")
			 ",\"CaptureConfiguration\":{\"CodeCapture\":"
			 "{\"CaptureReturn\":%s,\"CaptureStackTrace\":%s}}}",
			 cases[i].value, cases[i].value);
		assert_int_equal(parse(text, &c), 0);
		if (c.capture_return != cases[i].expect ||
		    c.capture_stack != cases[i].expect)
			fail_msg("CaptureReturn %s: expected %d", cases[i].value,
				 cases[i].expect);
		probe_config_free(&c);
	}
}

static void test_language_is_case_insensitive(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{\"Location\":{\"CodeLocation\":{\"Language\":"
		"\"PYTHON\",\"CodeUnit\":\"m\",\"MethodName\":\"f\"}}}", &c), 0);
	assert_true(c.language_python);
	probe_config_free(&c);
}

static void test_other_language_parses_for_mismatch_report(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{\"LocationHash\":\"j1\",\"Location\":"
		"{\"CodeLocation\":{\"Language\":\"java\",\"CodeUnit\":"
		"\"com.shop.Cart\",\"MethodName\":\"total\"}}}", &c), 0);
	assert_false(c.language_python);
	assert_string_equal(c.language, "java");
	assert_string_equal(c.id, "j1");
	probe_config_free(&c);
	/* no Language at all is not Python either */
	assert_int_equal(parse("{\"Location\":{\"CodeUnit\":\"m\","
			       "\"MethodName\":\"f\"}}", &c), 0);
	assert_false(c.language_python);
	probe_config_free(&c);
}

static void test_missing_code_unit_is_rejected(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{\"Location\":{\"CodeLocation\":{\"Language\":"
		"\"python\",\"CodeUnit\":\"\",\"MethodName\":\"f\"}}}", &c),
		-EINVAL);
	assert_non_null(strstr(err, "CodeUnit"));
	assert_null(c.capture_arguments);
}

static void test_missing_method_name_is_rejected(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{\"Location\":{\"CodeLocation\":{\"Language\":"
		"\"python\",\"CodeUnit\":\"m\",\"ClassName\":\"C\"}}}", &c),
		-EINVAL);
	assert_non_null(strstr(err, "MethodName"));
	assert_int_equal(parse("{\"Location\":{\"Language\":\"python\","
		"\"CodeUnit\":\"m\",\"MethodName\":5}}", &c), -EINVAL);
	assert_non_null(strstr(err, "MethodName must be a string"));
}

static void test_bad_location_is_rejected(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{\"LocationHash\":\"x\"}", &c), -EINVAL);
	assert_non_null(strstr(err, "Location"));
	assert_int_equal(parse("{\"Location\":\"not_a_dict\"}", &c), -EINVAL);
	assert_int_equal(parse("{\"Location\":{\"CodeLocation\":[]}}", &c),
			 -EINVAL);
	assert_non_null(strstr(err, "CodeLocation"));
	assert_int_equal(parse("[1]", &c), -EINVAL);
}

static void test_negative_line_is_rejected(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{" LOC_UNION(",\"LineNumber\":-1") "}", &c),
			 -EINVAL);
	assert_non_null(strstr(err, "LineNumber"));
	/* PROBE does not rescue a negative line either (ADOT) */
	assert_int_equal(parse("{\"InstrumentationType\":\"PROBE\","
			       LOC_UNION(",\"LineNumber\":\"-2\"") "}", &c),
			 -EINVAL);
}

static void test_line_number_coerces_like_safe_int(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{" LOC_UNION(",\"LineNumber\":\"17\"") "}", &c), 0);
	assert_int_equal(c.line, 17);
	probe_config_free(&c);
	assert_int_equal(parse("{" LOC_UNION(",\"LineNumber\":17.8") "}", &c), 0);
	assert_int_equal(c.line, 17);
	probe_config_free(&c);
	assert_int_equal(parse("{" LOC_UNION(",\"LineNumber\":true") "}", &c), 0);
	assert_int_equal(c.line, 0);
	probe_config_free(&c);
	assert_int_equal(parse("{" LOC_UNION(",\"LineNumber\":\"x\"") "}", &c), 0);
	assert_int_equal(c.line, 0);
	probe_config_free(&c);
	assert_int_equal(parse("{" LOC_UNION(",\"LineNumber\":1e12") "}", &c),
			 -EINVAL);
}

static void test_overlong_identifier_is_rejected_not_truncated(void **state)
{
	char text[2048], name[600];
	struct probe_config c;

	(void)state;
	memset(name, 'a', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(text, sizeof(text), "{\"Location\":{\"Language\":\"python\","
		 "\"CodeUnit\":\"m\",\"MethodName\":\"%s\"}}", name);
	assert_int_equal(parse(text, &c), -EINVAL);
	assert_non_null(strstr(err, "MethodName"));
	name[200] = '\0';
	snprintf(text, sizeof(text), "{\"LocationHash\":\"%s\"," LOC_UNION("")
		 "}", name);
	assert_int_equal(parse(text, &c), -EINVAL);
	assert_non_null(strstr(err, "LocationHash"));
}

static void test_separator_in_name_is_rejected(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{\"Location\":{\"Language\":\"python\","
		"\"CodeUnit\":\"m\",\"MethodName\":\"f@12\"}}", &c), -EINVAL);
	assert_int_equal(parse("{\"Location\":{\"Language\":\"python\","
		"\"CodeUnit\":\"a:b\",\"MethodName\":\"f\"}}", &c), -EINVAL);
	assert_int_equal(parse("{\"Location\":{\"Language\":\"python\","
		"\"CodeUnit\":\"app/x.py\",\"MethodName\":\"f\"}}", &c), -EINVAL);
	assert_int_equal(parse("{\"Location\":{\"Language\":\"python\","
		"\"CodeUnit\":\"x.py\",\"MethodName\":\"f\"}}", &c), -EINVAL);
}

static void test_expires_at_formats(void **state)
{
	static const struct {
		const char *value;
		long long ms;
	} cases[] = {
		{ "1700000000", 1700000000000LL },
		{ "1700000000.25", 1700000000250LL },
		{ "\"2025-10-27T19:34:00Z\"", 1761593640000LL },
		{ "\"2025-10-27T19:34:00\"", 1761593640000LL },	/* naive = UTC */
		{ "\"2025-10-27T21:34:00+02:00\"", 1761593640000LL },
		{ "\"2025-10-27T14:04:00-0530\"", 1761593640000LL },
		{ "\"2025-10-27 19:34:00.123456Z\"", 1761593640123LL },
		{ "\"20251027T193400Z\"", 1761593640000LL },
		{ "\"2025-10-27\"", 1761523200000LL },
		{ "\"2025-10-26T24:00\"", 1761523200000LL },
		{ "\"2025-W44-1\"", 1761523200000LL },	/* Monday 27 Oct */
		{ "\"2025-300\"", 1761523200000LL },	/* ordinal day */
		{ "\"invalid-date\"", 0 },
		{ "\"2025-02-29T00:00:00Z\"", 0 },
		{ "\"2025-10-27T19:34:00+25:00\"", 0 },
		{ "\"\"", 0 },
		{ "0", 0 },
		{ "null", 0 },
		{ "[1]", 0 },
		{ "1e300", 0 },
		{ "\"1970-01-01T00:00:00Z\"", 1 },	/* past, not "never" */
	};
	char text[512];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct probe_config c;

		snprintf(text, sizeof(text), "{" LOC_UNION("")
			 ",\"ExpiresAt\":%s}", cases[i].value);
		assert_int_equal(parse(text, &c), 0);
		if (c.expires_at_ms != cases[i].ms)
			fail_msg("ExpiresAt %s: got %lld, expected %lld",
				 cases[i].value, (long long)c.expires_at_ms,
				 cases[i].ms);
		probe_config_free(&c);
	}
}

static void test_config_given_as_json_string_is_parsed(void **state)
{
	struct probe_config a, b;
	json_t *s;

	(void)state;
	assert_int_equal(parse("{\"LocationHash\":\"h\"," LOC_UNION("") "}", &a), 0);
	s = json_string("{\"LocationHash\":\"h\"," LOC_UNION("") "}");
	assert_int_equal(probe_config_parse(s, &b, err, sizeof(err)), 0);
	assert_string_equal(b.module, "app.orders");
	assert_string_equal(a.fingerprint, b.fingerprint);
	json_decref(s);
	s = json_string("{not json");
	assert_int_equal(probe_config_parse(s, &b, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not JSON"));
	json_decref(s);
	probe_config_free(&a);
	probe_config_free(&b);
}

static void test_fingerprint_changes_iff_config_does(void **state)
{
	struct probe_config a, b, d;

	(void)state;
	assert_int_equal(parse("{\"LocationHash\":\"h\",\"ExpiresAt\":5,"
			       LOC_UNION("") "}", &a), 0);
	/* same content, other key order and spacing */
	assert_int_equal(parse("{ \"ExpiresAt\" : 5, " LOC_UNION("")
			       ", \"LocationHash\":\"h\"}", &b), 0);
	assert_string_equal(a.fingerprint, b.fingerprint);
	assert_int_equal(parse("{\"LocationHash\":\"h\",\"ExpiresAt\":6,"
			       LOC_UNION("") "}", &d), 0);
	assert_string_not_equal(a.fingerprint, d.fingerprint);
	probe_config_free(&a);
	probe_config_free(&b);
	probe_config_free(&d);
}

static void test_missing_location_hash_gets_stable_id(void **state)
{
	struct probe_config a, b;

	(void)state;
	assert_int_equal(parse("{" LOC_UNION("") "}", &a), 0);
	assert_int_equal(parse("{" LOC_UNION("") "}", &b), 0);
	assert_int_equal(strncmp(a.id, "cfg-", 4), 0);
	assert_string_equal(a.id + 4, a.fingerprint);
	assert_string_equal(a.id, b.id);
	probe_config_free(&a);
	probe_config_free(&b);
	assert_int_equal(parse("{\"LocationHash\":42," LOC_UNION("") "}", &a), 0);
	assert_string_equal(a.id, "42");
	probe_config_free(&a);
}

static void test_pydi_local_keys(void **state)
{
	struct probe_config c;

	(void)state;
	assert_int_equal(parse("{\"Service\":\"cart\",\"Environment\":\"prod\","
			       "\"Pid\":4242," LOC_UNION("") "}", &c), 0);
	assert_string_equal(c.service, "cart");
	assert_string_equal(c.environment, "prod");
	assert_int_equal(c.pid, 4242);
	probe_config_free(&c);
	assert_int_equal(parse("{\"Pid\":\"4242\"," LOC_UNION("") "}", &c),
			 -EINVAL);
	assert_non_null(strstr(err, "Pid"));
	assert_int_equal(parse("{\"Service\":1," LOC_UNION("") "}", &c), -EINVAL);
	assert_non_null(strstr(err, "Service"));
}

static void test_target_string(void **state)
{
	struct probe_config c;
	char target[1024];

	(void)state;
	assert_int_equal(parse("{" LOC_UNION(",\"LineNumber\":9") "}", &c), 0);
	probe_config_target(&c, target, sizeof(target));
	assert_string_equal(target, "app.orders:checkout@9");
	probe_config_free(&c);
	assert_int_equal(parse("{\"Location\":{\"Language\":\"python\","
		"\"CodeUnit\":\"m\",\"ClassName\":\"A.B\",\"MethodName\":\"f\"}}",
		&c), 0);
	probe_config_target(&c, target, sizeof(target));
	assert_string_equal(target, "m:A.B.f");
	probe_config_free(&c);
}

static bool matches(const char *filters, const char *attrs)
{
	char text[1024];
	struct probe_config c;
	json_t *a = json_loads(attrs, 0, NULL);
	bool m;

	snprintf(text, sizeof(text), "{" LOC_UNION("") "%s%s}",
		 filters ? ",\"AttributeFilters\":" : "", filters ? filters : "");
	if (parse(text, &c))
		fail_msg("%s: %s", text, err);
	m = probe_config_matches_attrs(&c, a);
	probe_config_free(&c);
	json_decref(a);
	return m;
}

static void test_attribute_filters_match_like_adot(void **state)
{
	const char *attrs = "{\"service.name\":\"cart\","
			    "\"deployment.environment.name\":\"prod\"}";

	(void)state;
	/* no filters: every process */
	assert_true(matches(NULL, attrs));
	assert_true(matches("[]", attrs));
	assert_true(matches("null", attrs));
	/* one object: all of its keys must equal */
	assert_true(matches("[{\"service.name\":\"cart\"}]", attrs));
	assert_true(matches("[{\"service.name\":\"cart\","
			    "\"deployment.environment.name\":\"prod\"}]", attrs));
	assert_false(matches("[{\"service.name\":\"cart\","
			     "\"deployment.environment.name\":\"dev\"}]", attrs));
	/* several objects: any one may match */
	assert_true(matches("[{\"service.name\":\"x\"},{\"service.name\":\"cart\"}]",
			    attrs));
	assert_false(matches("[{\"service.name\":\"x\"},{\"team\":\"a\"}]", attrs));
	/* an empty object or only empty keys matches nothing */
	assert_false(matches("[{}]", attrs));
	assert_false(matches("[{\"\":\"cart\"}]", attrs));
	/* non-objects are skipped */
	assert_false(matches("[\"service.name\"]", attrs));
	assert_true(matches("[1,{\"service.name\":\"cart\"}]", attrs));
	/* a truthy non-list: ADOT iterates it (no match) or raises (match) */
	assert_false(matches("{\"service.name\":\"cart\"}", attrs));
	assert_false(matches("\"cart\"", attrs));
	assert_true(matches("7", attrs));
	/* an absent attribute equals only null; numbers compare by value */
	assert_true(matches("[{\"team\":null}]", attrs));
	assert_true(matches("[{\"n\":1}]", "{\"n\":1.0}"));
	assert_true(matches("[{\"n\":true}]", "{\"n\":1}"));
	assert_false(matches("[{\"n\":\"1\"}]", "{\"n\":1}"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_union_form_parses_every_field),
		cmocka_unit_test(test_legacy_flat_form_parses),
		cmocka_unit_test(test_defaults_match_adot),
		cmocka_unit_test(test_probe_forces_line_zero),
		cmocka_unit_test(test_probe_ignores_expires_at_and_max_hits),
		cmocka_unit_test(test_invalid_instrumentation_type_is_breakpoint),
		cmocka_unit_test(test_max_hits_clamped_to_1000),
		cmocka_unit_test(test_limits_below_minimum_clamp_to_minimum),
		cmocka_unit_test(test_limits_above_maximum_clamp_to_maximum),
		cmocka_unit_test(test_limits_coerce_like_python_int),
		cmocka_unit_test(test_wrong_capture_shapes_fall_back_to_defaults),
		cmocka_unit_test(test_capture_lists_absent_empty_and_named),
		cmocka_unit_test(test_capture_list_without_strings_captures_none),
		cmocka_unit_test(test_capture_list_present_but_not_a_list_captures_all),
		cmocka_unit_test(test_capture_flags_accept_python_truthy_strings),
		cmocka_unit_test(test_language_is_case_insensitive),
		cmocka_unit_test(test_other_language_parses_for_mismatch_report),
		cmocka_unit_test(test_missing_code_unit_is_rejected),
		cmocka_unit_test(test_missing_method_name_is_rejected),
		cmocka_unit_test(test_bad_location_is_rejected),
		cmocka_unit_test(test_negative_line_is_rejected),
		cmocka_unit_test(test_line_number_coerces_like_safe_int),
		cmocka_unit_test(test_overlong_identifier_is_rejected_not_truncated),
		cmocka_unit_test(test_separator_in_name_is_rejected),
		cmocka_unit_test(test_expires_at_formats),
		cmocka_unit_test(test_config_given_as_json_string_is_parsed),
		cmocka_unit_test(test_fingerprint_changes_iff_config_does),
		cmocka_unit_test(test_missing_location_hash_gets_stable_id),
		cmocka_unit_test(test_pydi_local_keys),
		cmocka_unit_test(test_target_string),
		cmocka_unit_test(test_attribute_filters_match_like_adot),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
