// SPDX-License-Identifier: MIT
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <jansson.h>

#include "agent_config.h"

#ifndef PYDI_SOURCE_DIR
#error "PYDI_SOURCE_DIR must name the source tree (tests/CMakeLists.txt)"
#endif
#define SCHEMA_PATH PYDI_SOURCE_DIR "/schemas/agent-config.schema.json"

static const char *const env_vars[] = {
	"OTEL_AWS_DYNAMIC_INSTRUMENTATION_API_URL",
	"OTEL_AWS_OTLP_LOGS_ENDPOINT",
	"OTEL_AWS_DYNAMIC_INSTRUMENTATION_BREAKPOINT_POLL_INTERVAL",
	"OTEL_AWS_DYNAMIC_INSTRUMENTATION_PROBE_POLL_INTERVAL",
	"OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
	"OTEL_EXPORTER_OTLP_COMPRESSION",
};

static char err[512];
static char path[64];

/* Every test starts from an environment without the variables it reads. */
static int clear_env(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(env_vars) / sizeof(env_vars[0]); i++)
		unsetenv(env_vars[i]);
	err[0] = '\0';
	return 0;
}

static const char *write_file(const char *text)
{
	int fd;

	snprintf(path, sizeof(path), "/tmp/pydi-agent-config-XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static int load_text(const char *text, struct agent_config *c)
{
	int ret = agent_config_load(write_file(text), c, err, sizeof(err));

	unlink(path);
	return ret;
}

static void test_no_file_gives_defaults(void **state)
{
	struct agent_config c;

	(void)state;
	assert_int_equal(agent_config_load(NULL, &c, err, sizeof(err)), 0);
	assert_null(c.api_url);
	assert_int_equal(c.breakpoint_poll_s, 60);
	assert_int_equal(c.probe_poll_s, 600);
	assert_int_equal(c.api_timeout_ms, 10000);
	assert_null(c.otlp_endpoint);
	assert_false(c.otlp_gzip);
	assert_int_equal(c.queue_max, 10000);
	assert_int_equal(c.batch_max, 256);
	assert_null(c.config_dir);
	assert_string_equal(c.control_socket, "/run/pydi/agent.sock");
	assert_null(c.metrics_listen);
	assert_int_equal(c.rescan_s, 30);
	assert_int_equal(c.status_sweep_s, 60);
	assert_int_equal(c.lease_ms, 5000);
	assert_int_equal(c.max_snapshot_bytes, 1048576);
	assert_null(c.redact_names);
	assert_null(c.redact_types);
	assert_string_equal(c.log_level, "info");
	agent_config_free(&c);
}

static void test_without_otlp_snapshots_go_to_stdout(void **state)
{
	struct agent_config c;

	(void)state;
	assert_int_equal(load_text("{}", &c), 0);
	assert_string_equal(c.jsonl_path, "-");
	agent_config_free(&c);
	assert_int_equal(load_text("{\"otlp_endpoint\":\"http://c:4316/v1/logs\"}",
				   &c), 0);
	assert_null(c.jsonl_path);
	agent_config_free(&c);
	assert_int_equal(load_text("{\"jsonl\":\"/var/log/pydi.jsonl\"}", &c), 0);
	assert_string_equal(c.jsonl_path, "/var/log/pydi.jsonl");
	agent_config_free(&c);
}

static void test_file_sets_every_field(void **state)
{
	struct agent_config c;

	(void)state;
	assert_int_equal(load_text("{\n"
		"\"api_url\": \"http://di:2000\",\n"
		"\"breakpoint_poll_interval_s\": 1,\n"
		"\"probe_poll_interval_s\": 2,\n"
		"\"api_timeout_ms\": 500,\n"
		"\"otlp_endpoint\": \"http://otel:4316/v1/logs\",\n"
		"\"otlp_compression\": \"gzip\",\n"
		"\"jsonl\": \"-\",\n"
		"\"queue_max\": 50,\n"
		"\"batch_max\": 5,\n"
		"\"config_dir\": \"/etc/pydi/probes\",\n"
		"\"control_socket\": \"/tmp/pydi.sock\",\n"
		"\"metrics_listen\": \"127.0.0.1:9464\",\n"
		"\"rescan_interval_s\": 2,\n"
		"\"status_sweep_interval_s\": 1.0,\n"
		"\"lease_ms\": 2000,\n"
		"\"max_snapshot_bytes\": 65536,\n"
		"\"redact\": {\"names\": [\"card_no\"], \"types\": [\"SecretStr\", \"Key\"]},\n"
		"\"log_level\": \"debug\"\n"
		"}\n", &c), 0);
	assert_string_equal(c.api_url, "http://di:2000");
	assert_int_equal(c.breakpoint_poll_s, 1);
	assert_int_equal(c.probe_poll_s, 2);
	assert_int_equal(c.api_timeout_ms, 500);
	assert_string_equal(c.otlp_endpoint, "http://otel:4316/v1/logs");
	assert_true(c.otlp_gzip);
	assert_string_equal(c.jsonl_path, "-");
	assert_int_equal(c.queue_max, 50);
	assert_int_equal(c.batch_max, 5);
	assert_string_equal(c.config_dir, "/etc/pydi/probes");
	assert_string_equal(c.control_socket, "/tmp/pydi.sock");
	assert_string_equal(c.metrics_listen, "127.0.0.1:9464");
	assert_int_equal(c.rescan_s, 2);
	assert_int_equal(c.status_sweep_s, 1);
	assert_int_equal(c.lease_ms, 2000);
	assert_int_equal(c.max_snapshot_bytes, 65536);
	assert_string_equal(c.redact_names[0], "card_no");
	assert_null(c.redact_names[1]);
	assert_string_equal(c.redact_types[1], "Key");
	assert_null(c.redact_types[2]);
	assert_string_equal(c.log_level, "debug");
	agent_config_free(&c);
}

static void test_unknown_key_is_rejected(void **state)
{
	struct agent_config c;

	(void)state;
	assert_int_equal(load_text("{\"api_urll\": \"http://x\"}", &c), -EINVAL);
	assert_non_null(strstr(err, path));
	assert_non_null(strstr(err, "unknown key 'api_urll'"));
	assert_int_equal(load_text("{\"redact\": {\"name\": []}}", &c), -EINVAL);
	assert_non_null(strstr(err, "redact: unknown key 'name'"));
}

static void test_wrong_type_is_rejected(void **state)
{
	static const char *const cases[][2] = {
		{ "{\"queue_max\": \"10\"}", "queue_max: expected an integer, got a string" },
		{ "{\"lease_ms\": 2500.5}", "lease_ms: expected an integer" },
		{ "{\"api_url\": 5}", "api_url: expected a string, got an integer" },
		{ "{\"control_socket\": null}", "control_socket: expected a string, got null" },
		{ "{\"otlp_compression\": true}", "otlp_compression" },
		{ "{\"log_level\": \"verbose\"}", "log_level" },
		{ "{\"redact\": {\"names\": \"x\"}}", "redact.names: expected an array" },
		{ "{\"redact\": {\"types\": [\"ok\", 3]}}", "redact.types[1]: expected a string" },
		{ "{\"jsonl\": \"\"}", "jsonl: must not be empty" },
		{ "{\"metrics_listen\": \"localhost\"}", "metrics_listen" },
		{ "[]", "expected a JSON object" },
	};
	struct agent_config c;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(load_text(cases[i][0], &c), -EINVAL);
		if (!strstr(err, cases[i][1]) || !strstr(err, path))
			fail_msg("%s: got '%s', expected '%s'", cases[i][0], err,
				 cases[i][1]);
	}
}

static void test_out_of_range_is_rejected(void **state)
{
	struct agent_config c;

	(void)state;
	assert_int_equal(load_text("{\"breakpoint_poll_interval_s\": 0}", &c),
			 -EINVAL);
	assert_non_null(strstr(err, "breakpoint_poll_interval_s: 0 is out of range 1.."));
	assert_int_equal(load_text("{\"queue_max\": -1}", &c), -EINVAL);
	assert_non_null(strstr(err, "queue_max: -1 is out of range"));
	assert_int_equal(load_text("{\"lease_ms\": 99}", &c), -EINVAL);
	assert_int_equal(load_text("{\"max_snapshot_bytes\": 1e12}", &c), -EINVAL);
	assert_non_null(strstr(err, "max_snapshot_bytes"));
}

static void test_invalid_json_reports_line_and_column(void **state)
{
	struct agent_config c;
	char where[96];

	(void)state;
	assert_int_equal(load_text("{\n  \"queue_max\": 10,\n  oops\n}\n", &c),
			 -EINVAL);
	snprintf(where, sizeof(where), "%s:3:", path);
	if (!strstr(err, where) || !strstr(err, "invalid JSON"))
		fail_msg("got '%s'", err);
	assert_int_equal(load_text("{\"queue_max\": 1, \"queue_max\": 2}", &c),
			 -EINVAL);
	assert_non_null(strstr(err, "duplicate"));
}

static void test_unreadable_file_is_rejected(void **state)
{
	struct agent_config c;

	(void)state;
	assert_int_equal(agent_config_load("/nonexistent/pydi.json", &c, err,
					   sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "/nonexistent/pydi.json"));
	assert_non_null(strstr(err, "No such file"));
}

static void test_env_overrides_file(void **state)
{
	struct agent_config c;

	(void)state;
	setenv("OTEL_AWS_DYNAMIC_INSTRUMENTATION_API_URL", "http://env:2000", 1);
	setenv("OTEL_AWS_OTLP_LOGS_ENDPOINT", " http://env:4316/v1/logs ", 1);
	setenv("OTEL_AWS_DYNAMIC_INSTRUMENTATION_BREAKPOINT_POLL_INTERVAL", "2", 1);
	setenv("OTEL_AWS_DYNAMIC_INSTRUMENTATION_PROBE_POLL_INTERVAL", " 1_0 ", 1);
	assert_int_equal(load_text("{\"api_url\": \"http://file:2000\","
		"\"otlp_endpoint\": \"http://file:4316\","
		"\"breakpoint_poll_interval_s\": 30,"
		"\"probe_poll_interval_s\": 300}", &c), 0);
	assert_string_equal(c.api_url, "http://env:2000");
	assert_string_equal(c.otlp_endpoint, "http://env:4316/v1/logs");
	assert_int_equal(c.breakpoint_poll_s, 2);
	assert_int_equal(c.probe_poll_s, 10);
	assert_null(c.jsonl_path);
	agent_config_free(&c);
}

static void test_empty_env_var_is_unset(void **state)
{
	struct agent_config c;

	(void)state;
	setenv("OTEL_AWS_DYNAMIC_INSTRUMENTATION_API_URL", "", 1);
	setenv("OTEL_AWS_OTLP_LOGS_ENDPOINT", "  ", 1);
	setenv("OTEL_AWS_DYNAMIC_INSTRUMENTATION_BREAKPOINT_POLL_INTERVAL", "", 1);
	assert_int_equal(load_text("{\"api_url\": \"http://file:2000\","
				   "\"breakpoint_poll_interval_s\": 7}", &c), 0);
	assert_string_equal(c.api_url, "http://file:2000");
	/* A DI API without an endpoint exports where ADOT would. */
	assert_string_equal(c.otlp_endpoint, ADOT_DEFAULT_LOGS_ENDPOINT);
	assert_int_equal(c.breakpoint_poll_s, 7);
	assert_null(c.jsonl_path);
	agent_config_free(&c);
}

static void test_invalid_env_interval_is_ignored_like_adot(void **state)
{
	static const char *const bad[] = { "0", "-5", "abc", "1.5", "_1", "1__0" };
	struct agent_config c;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		setenv("OTEL_AWS_DYNAMIC_INSTRUMENTATION_PROBE_POLL_INTERVAL",
		       bad[i], 1);
		assert_int_equal(load_text("{\"probe_poll_interval_s\": 42}", &c), 0);
		if (c.probe_poll_s != 42)
			fail_msg("'%s' was taken as %u", bad[i], c.probe_poll_s);
		agent_config_free(&c);
	}
}

static void test_logs_compression_env_wins_over_generic(void **state)
{
	struct agent_config c;

	(void)state;
	setenv("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip", 1);
	assert_int_equal(agent_config_load(NULL, &c, err, sizeof(err)), 0);
	assert_true(c.otlp_gzip);
	agent_config_free(&c);
	setenv("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "none", 1);
	assert_int_equal(agent_config_load(NULL, &c, err, sizeof(err)), 0);
	assert_false(c.otlp_gzip);
	agent_config_free(&c);
	unsetenv("OTEL_EXPORTER_OTLP_COMPRESSION");
	setenv("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "GZIP", 1);
	assert_int_equal(load_text("{\"otlp_compression\": \"none\"}", &c), 0);
	assert_true(c.otlp_gzip);
	agent_config_free(&c);
}

static void test_null_clears_an_optional_string(void **state)
{
	struct agent_config c;

	(void)state;
	assert_int_equal(load_text("{\"api_url\": null, \"metrics_listen\": null,"
				   "\"redact\": {}}", &c), 0);
	assert_null(c.api_url);
	assert_null(c.metrics_listen);
	agent_config_free(&c);
}

/* --- the schema ------------------------------------------------------------ */

static json_t *load_schema(void)
{
	json_error_t jerr;
	json_t *schema = json_load_file(SCHEMA_PATH, JSON_REJECT_DUPLICATES,
					&jerr);

	if (!schema)
		fail_msg("%s:%d:%d: %s", SCHEMA_PATH, jerr.line, jerr.column,
			 jerr.text);
	return schema;
}

static json_t *string_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

static json_t *string_list(char **list)
{
	json_t *a = json_array();

	for (char **p = list; p && *p; p++)
		json_array_append_new(a, json_string(*p));
	return a;
}

/* The loaded settings under the file's key names. */
static json_t *config_as_json(const struct agent_config *c)
{
	return json_pack("{s:o,s:I,s:I,s:I,s:o,s:s,s:o,s:I,s:I,s:o,s:s,s:o,"
			 "s:I,s:I,s:I,s:I,s:{s:o,s:o},s:s}",
		"api_url", string_or_null(c->api_url),
		"breakpoint_poll_interval_s", (json_int_t)c->breakpoint_poll_s,
		"probe_poll_interval_s", (json_int_t)c->probe_poll_s,
		"api_timeout_ms", (json_int_t)c->api_timeout_ms,
		"otlp_endpoint", string_or_null(c->otlp_endpoint),
		"otlp_compression", c->otlp_gzip ? "gzip" : "none",
		"jsonl", string_or_null(c->jsonl_path),
		"queue_max", (json_int_t)c->queue_max,
		"batch_max", (json_int_t)c->batch_max,
		"config_dir", string_or_null(c->config_dir),
		"control_socket", c->control_socket,
		"metrics_listen", string_or_null(c->metrics_listen),
		"rescan_interval_s", (json_int_t)c->rescan_s,
		"status_sweep_interval_s", (json_int_t)c->status_sweep_s,
		"lease_ms", (json_int_t)c->lease_ms,
		"max_snapshot_bytes", (json_int_t)c->max_snapshot_bytes,
		"redact", "names", string_list(c->redact_names),
		"types", string_list(c->redact_types),
		"log_level", c->log_level);
}

static void test_schema_is_a_closed_2020_12_schema(void **state)
{
	json_t *schema = load_schema(), *props, *prop;
	const char *key;

	(void)state;
	assert_string_equal(json_string_value(json_object_get(schema, "$schema")),
			    "https://json-schema.org/draft/2020-12/schema");
	assert_string_equal(json_string_value(json_object_get(schema, "type")),
			    "object");
	assert_true(json_is_false(json_object_get(schema, "additionalProperties")));
	props = json_object_get(schema, "properties");
	assert_true(json_is_object(props));
	json_object_foreach(props, key, prop) {
		if (!json_is_object(prop) || !json_object_get(prop, "default"))
			fail_msg("schema property %s has no default", key);
	}
	json_decref(schema);
}

static void test_schema_defaults_equal_c_defaults(void **state)
{
	json_t *schema = load_schema(), *props, *prop, *got;
	struct agent_config c;
	const char *key;

	(void)state;
	/* With an OTLP endpoint, jsonl keeps its own default (null). */
	assert_int_equal(load_text("{\"otlp_endpoint\": \"http://c:4316/v1/logs\"}",
				   &c), 0);
	got = config_as_json(&c);
	agent_config_free(&c);
	json_object_set_new(got, "otlp_endpoint", json_null());
	props = json_object_get(schema, "properties");
	assert_int_equal(json_object_size(props), json_object_size(got));
	json_object_foreach(props, key, prop) {
		json_t *want = json_object_get(prop, "default");
		json_t *have = json_object_get(got, key);

		if (!have || !json_equal(want, have)) {
			char *w = json_dumps(want, JSON_ENCODE_ANY);
			char *h = have ? json_dumps(have, JSON_ENCODE_ANY) : NULL;

			fail_msg("%s: schema default %s, C default %s", key, w,
				 h ? h : "(no such key)");
		}
	}
	json_decref(got);
	json_decref(schema);
}

/* The schema's keys and integer ranges are the loader's: its defaults load,
 * and one past either bound is refused. */
static void test_schema_ranges_are_the_loader_ranges(void **state)
{
	json_t *schema = load_schema(), *props, *prop, *doc;
	struct agent_config c;
	const char *key;
	char *text;

	(void)state;
	props = json_object_get(schema, "properties");
	doc = json_object();
	json_object_foreach(props, key, prop)
		json_object_set(doc, key, json_object_get(prop, "default"));
	text = json_dumps(doc, 0);
	assert_int_equal(load_text(text, &c), 0);
	agent_config_free(&c);
	free(text);
	json_decref(doc);

	json_object_foreach(props, key, prop) {
		json_t *min = json_object_get(prop, "minimum");
		json_t *max = json_object_get(prop, "maximum");
		char one[128];

		if (!min || !max)
			continue;
		snprintf(one, sizeof(one), "{\"%s\": %lld}", key,
			 (long long)json_integer_value(min));
		assert_int_equal(load_text(one, &c), 0);
		agent_config_free(&c);
		snprintf(one, sizeof(one), "{\"%s\": %lld}", key,
			 (long long)json_integer_value(max));
		assert_int_equal(load_text(one, &c), 0);
		agent_config_free(&c);
		snprintf(one, sizeof(one), "{\"%s\": %lld}", key,
			 (long long)json_integer_value(min) - 1);
		if (load_text(one, &c) != -EINVAL)
			fail_msg("%s accepted", one);
		snprintf(one, sizeof(one), "{\"%s\": %lld}", key,
			 (long long)json_integer_value(max) + 1);
		if (load_text(one, &c) != -EINVAL)
			fail_msg("%s accepted", one);
	}
	json_decref(schema);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_no_file_gives_defaults, clear_env),
		cmocka_unit_test_setup(test_without_otlp_snapshots_go_to_stdout, clear_env),
		cmocka_unit_test_setup(test_file_sets_every_field, clear_env),
		cmocka_unit_test_setup(test_unknown_key_is_rejected, clear_env),
		cmocka_unit_test_setup(test_wrong_type_is_rejected, clear_env),
		cmocka_unit_test_setup(test_out_of_range_is_rejected, clear_env),
		cmocka_unit_test_setup(test_invalid_json_reports_line_and_column, clear_env),
		cmocka_unit_test_setup(test_unreadable_file_is_rejected, clear_env),
		cmocka_unit_test_setup(test_env_overrides_file, clear_env),
		cmocka_unit_test_setup(test_empty_env_var_is_unset, clear_env),
		cmocka_unit_test_setup(test_invalid_env_interval_is_ignored_like_adot, clear_env),
		cmocka_unit_test_setup(test_logs_compression_env_wins_over_generic, clear_env),
		cmocka_unit_test_setup(test_null_clears_an_optional_string, clear_env),
		cmocka_unit_test_setup(test_schema_is_a_closed_2020_12_schema, clear_env),
		cmocka_unit_test_setup(test_schema_defaults_equal_c_defaults, clear_env),
		cmocka_unit_test_setup(test_schema_ranges_are_the_loader_ranges, clear_env),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
