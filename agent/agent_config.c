// SPDX-License-Identifier: MIT
/*
 * The agent's settings: defaults, then the --config file, then the
 * environment variables ADOT's debugger reads. The file is strict (unknown
 * keys, wrong types and out-of-range values are errors, with the file and
 * field named) because a typo there would otherwise silently run the agent
 * with a default. The environment is read the way ADOT reads it, so that
 * settings carried over from ADOT behave alike.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <jansson.h>

#include "agent_config.h"
#include "errbuf.h"

#define UNIX_PATH_MAX_LEN	107	/* sun_path holds 108 bytes with the NUL */

enum field_kind {
	FIELD_UINT,		/* unsigned int, range-checked */
	FIELD_SIZE,		/* size_t, range-checked */
	FIELD_STRING,		/* non-empty string */
	FIELD_STRING_OR_NULL,	/* non-empty string, or null = unset */
	FIELD_COMPRESSION,	/* "gzip" | "none" -> otlp_gzip */
	FIELD_LOG_LEVEL,	/* "debug" | "info" | "warning" | "error" */
	FIELD_LISTEN,		/* "host:port" or null */
	FIELD_REDACT,		/* {names: [...], types: [...]} */
};

struct field {
	const char *key;
	enum field_kind kind;
	size_t offset;
	unsigned long long min, max;	/* numbers: range; strings: max length */
};

#define F(key, kind, member, min, max) \
	{ key, kind, offsetof(struct agent_config, member), min, max }

/* Keep in step with schemas/agent-config.schema.json (a unit test checks). */
static const struct field fields[] = {
	F("api_url", FIELD_STRING_OR_NULL, api_url, 0, 4096),
	F("breakpoint_poll_interval_s", FIELD_UINT, breakpoint_poll_s, 1,
	  2592000),
	F("probe_poll_interval_s", FIELD_UINT, probe_poll_s, 1, 2592000),
	F("api_timeout_ms", FIELD_UINT, api_timeout_ms, 1, 600000),
	F("otlp_endpoint", FIELD_STRING_OR_NULL, otlp_endpoint, 0, 4096),
	F("otlp_compression", FIELD_COMPRESSION, otlp_gzip, 0, 0),
	F("jsonl", FIELD_STRING_OR_NULL, jsonl_path, 0, 4096),
	F("queue_max", FIELD_SIZE, queue_max, 1, 10000000),
	F("batch_max", FIELD_UINT, batch_max, 1, 100000),
	F("config_dir", FIELD_STRING_OR_NULL, config_dir, 0, 4096),
	F("control_socket", FIELD_STRING, control_socket, 0,
	  UNIX_PATH_MAX_LEN),
	F("metrics_listen", FIELD_LISTEN, metrics_listen, 0, 255),
	F("rescan_interval_s", FIELD_UINT, rescan_s, 1, 86400),
	F("status_sweep_interval_s", FIELD_UINT, status_sweep_s, 1, 86400),
	F("lease_ms", FIELD_UINT, lease_ms, 100, 3600000),
	F("max_snapshot_bytes", FIELD_SIZE, max_snapshot_bytes, 4096,
	  67108864),
	F("redact", FIELD_REDACT, redact_names, 0, 0),
	F("log_level", FIELD_LOG_LEVEL, log_level, 0, 0),
};

static const char *const log_levels[] = { "debug", "info", "warning",
					  "error" };

static int set_defaults(struct agent_config *c)
{
	memset(c, 0, sizeof(*c));
	c->breakpoint_poll_s = 60;	/* ADOT's DEFAULT_BREAKPOINT_POLL_INTERVAL */
	c->probe_poll_s = 600;		/* ADOT's DEFAULT_PROBE_POLL_INTERVAL */
	c->api_timeout_ms = 10000;
	c->queue_max = 10000;
	c->batch_max = 256;
	c->rescan_s = 30;
	c->status_sweep_s = 60;
	c->lease_ms = 5000;
	c->max_snapshot_bytes = 1048576;
	c->control_socket = strdup("/run/pydi/agent.sock");
	c->log_level = strdup("info");
	return c->control_socket && c->log_level ? 0 : -ENOMEM;
}

static const char *type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

/* An integer, or a number with no fraction (JSON Schema's "integer"). */
static int number_value(const char *path, const struct field *f,
			const json_t *v, unsigned long long *out, char *err,
			size_t err_len)
{
	double d;

	if (json_is_integer(v)) {
		json_int_t i = json_integer_value(v);

		if (i < 0 || (unsigned long long)i < f->min ||
		    (unsigned long long)i > f->max) {
			set_err(err, err_len, "%s: %s: %lld is out of range %llu..%llu",
				path, f->key, (long long)i, f->min, f->max);
			return -EINVAL;
		}
		*out = (unsigned long long)i;
		return 0;
	}
	if (!json_is_real(v)) {
		set_err(err, err_len, "%s: %s: expected an integer, got %s",
			path, f->key, type_name(v));
		return -EINVAL;
	}
	d = json_real_value(v);
	if (d < (double)f->min || d > (double)f->max) {
		set_err(err, err_len, "%s: %s: %g is out of range %llu..%llu",
			path, f->key, d, f->min, f->max);
		return -EINVAL;
	}
	/* In range, so the cast is defined: 2.0 is an integer, 2.5 is not. */
	if ((double)(unsigned long long)d != d) {
		set_err(err, err_len, "%s: %s: expected an integer, got %g",
			path, f->key, d);
		return -EINVAL;
	}
	*out = (unsigned long long)d;
	return 0;
}

/* A non-empty string without NULs, at most max bytes, duplicated. */
static int string_value(const char *path, const char *key, const json_t *v,
			size_t max, char **out, char *err, size_t err_len)
{
	size_t len;

	if (!json_is_string(v)) {
		set_err(err, err_len, "%s: %s: expected a string, got %s", path,
			key, type_name(v));
		return -EINVAL;
	}
	len = json_string_length(v);
	if (!len) {
		set_err(err, err_len, "%s: %s: must not be empty", path, key);
		return -EINVAL;
	}
	if (strlen(json_string_value(v)) != len) {
		set_err(err, err_len, "%s: %s: contains a NUL character", path,
			key);
		return -EINVAL;
	}
	if (len > max) {
		set_err(err, err_len, "%s: %s: %zu bytes long, the limit is %zu",
			path, key, len, max);
		return -EINVAL;
	}
	*out = strdup(json_string_value(v));
	return *out ? 0 : -ENOMEM;
}

static void free_list(char **list)
{
	if (!list)
		return;
	for (char **p = list; *p; p++)
		free(*p);
	free(list);
}

/* redact.names / redact.types: an array of non-empty strings. */
static int string_list(const char *path, const char *key, const json_t *v,
		       char ***out, char *err, size_t err_len)
{
	char **list;
	size_t i;
	json_t *item;
	int ret;

	if (!json_is_array(v)) {
		set_err(err, err_len, "%s: %s: expected an array of strings, got %s",
			path, key, type_name(v));
		return -EINVAL;
	}
	list = calloc(json_array_size(v) + 1, sizeof(*list));
	if (!list)
		return -ENOMEM;
	json_array_foreach(v, i, item) {
		char name[64];

		snprintf(name, sizeof(name), "%s[%zu]", key, i);
		ret = string_value(path, name, item, 255, &list[i], err,
				   err_len);
		if (ret) {
			free_list(list);
			return ret;
		}
	}
	free_list(*out);
	*out = list;
	return 0;
}

static int redact_value(const char *path, const json_t *v,
			struct agent_config *c, char *err, size_t err_len)
{
	const char *key;
	json_t *item;
	int ret;

	if (!json_is_object(v)) {
		set_err(err, err_len, "%s: redact: expected an object, got %s",
			path, type_name(v));
		return -EINVAL;
	}
	json_object_foreach((json_t *)v, key, item) {
		if (!strcmp(key, "names"))
			ret = string_list(path, "redact.names", item,
					  &c->redact_names, err, err_len);
		else if (!strcmp(key, "types"))
			ret = string_list(path, "redact.types", item,
					  &c->redact_types, err, err_len);
		else {
			set_err(err, err_len,
				"%s: redact: unknown key '%s' (expected names, types)",
				path, key);
			ret = -EINVAL;
		}
		if (ret)
			return ret;
	}
	return 0;
}

/* "host:port": the port is what a typo most often breaks. */
static int check_listen(const char *path, const char *s, char *err,
			size_t err_len)
{
	const char *colon = strrchr(s, ':');
	char *end;
	unsigned long port;

	if (!colon || colon == s || !colon[1])
		goto bad;
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (*end || errno || port > 65535 || colon[1] < '0' || colon[1] > '9')
		goto bad;
	return 0;
bad:
	set_err(err, err_len,
		"%s: metrics_listen: '%s' is not host:port (e.g. 127.0.0.1:9464)",
		path, s);
	return -EINVAL;
}

static int apply_field(const char *path, const struct field *f,
		       const json_t *v, struct agent_config *c, char *err,
		       size_t err_len)
{
	void *member = (char *)c + f->offset;
	unsigned long long n;
	char *s = NULL;
	int ret;

	switch (f->kind) {
	case FIELD_UINT:
	case FIELD_SIZE:
		ret = number_value(path, f, v, &n, err, err_len);
		if (ret)
			return ret;
		if (f->kind == FIELD_UINT)
			*(unsigned int *)member = (unsigned int)n;
		else
			*(size_t *)member = (size_t)n;
		return 0;
	case FIELD_STRING_OR_NULL:
	case FIELD_LISTEN:
		if (json_is_null(v)) {
			free(*(char **)member);
			*(char **)member = NULL;
			return 0;
		}
		/* fall through */
	case FIELD_STRING:
		ret = string_value(path, f->key, v, f->max, &s, err, err_len);
		if (!ret && f->kind == FIELD_LISTEN)
			ret = check_listen(path, s, err, err_len);
		if (ret) {
			free(s);
			return ret;
		}
		free(*(char **)member);
		*(char **)member = s;
		return 0;
	case FIELD_COMPRESSION:
		if (json_is_string(v) && !strcmp(json_string_value(v), "gzip"))
			c->otlp_gzip = true;
		else if (json_is_string(v) &&
			 !strcmp(json_string_value(v), "none"))
			c->otlp_gzip = false;
		else {
			set_err(err, err_len,
				"%s: otlp_compression: expected \"gzip\" or \"none\"",
				path);
			return -EINVAL;
		}
		return 0;
	case FIELD_LOG_LEVEL:
		for (size_t i = 0; json_is_string(v) &&
				   i < sizeof(log_levels) / sizeof(log_levels[0]);
		     i++) {
			if (strcmp(json_string_value(v), log_levels[i]))
				continue;
			s = strdup(log_levels[i]);
			if (!s)
				return -ENOMEM;
			free(c->log_level);
			c->log_level = s;
			return 0;
		}
		set_err(err, err_len,
			"%s: log_level: expected \"debug\", \"info\", \"warning\" or \"error\"",
			path);
		return -EINVAL;
	case FIELD_REDACT:
		return redact_value(path, v, c, err, err_len);
	}
	return -EINVAL;
}

static int load_file(const char *path, struct agent_config *c, char *err,
		     size_t err_len)
{
	json_error_t jerr;
	json_t *root, *v;
	const char *key;
	FILE *f;
	int ret = 0;

	f = fopen(path, "r");
	if (!f) {
		set_err(err, err_len, "%s: cannot read: %s", path,
			strerror(errno));
		return -EINVAL;
	}
	/* A key given twice is a mistake in one of them: refuse it. */
	root = json_loadf(f, JSON_REJECT_DUPLICATES, &jerr);
	fclose(f);
	if (!root) {
		set_err(err, err_len, "%s:%d:%d: invalid JSON: %s", path,
			jerr.line, jerr.column, jerr.text);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		set_err(err, err_len, "%s: expected a JSON object, got %s",
			path, type_name(root));
		json_decref(root);
		return -EINVAL;
	}
	json_object_foreach(root, key, v) {
		const struct field *f = NULL;

		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
			if (!strcmp(fields[i].key, key))
				f = &fields[i];
		if (!f) {
			set_err(err, err_len,
				"%s: unknown key '%s' (see schemas/agent-config.schema.json)",
				path, key);
			ret = -EINVAL;
			break;
		}
		ret = apply_field(path, f, v, c, err, err_len);
		if (ret)
			break;
	}
	json_decref(root);
	if (ret == -ENOMEM)
		set_err(err, err_len, "%s: out of memory", path);
	return ret;
}

/* An environment variable with its surrounding whitespace cut, in *out (the
 * caller frees); NULL when it is unset or blank, which counts as unset. */
static int env_trimmed(const char *name, char **out)
{
	const char *v = getenv(name);
	size_t len;

	*out = NULL;
	if (!v)
		return 0;
	while (*v == ' ' || (*v >= '\t' && *v <= '\r'))
		v++;
	len = strlen(v);
	while (len && (v[len - 1] == ' ' ||
		       (v[len - 1] >= '\t' && v[len - 1] <= '\r')))
		len--;
	if (!len)
		return 0;
	*out = strndup(v, len);
	return *out ? 0 : -ENOMEM;
}

static int env_string(const char *name, char **member)
{
	char *v;
	int ret = env_trimmed(name, &v);

	if (ret || !v)
		return ret;
	free(*member);
	*member = v;
	return 0;
}

/*
 * A poll interval as ADOT's get_debugger_config reads it: Python's int()
 * of the text (sign, digits, single underscores); below 1 or not a number,
 * ADOT warns and keeps its default, so pydi warns and keeps what the file
 * or its own default gave.
 */
static int env_interval(const char *name, unsigned int *member)
{
	const char *p;
	unsigned long long n = 0;
	bool neg = false, digits = false, ok = true, underscore = false;
	char *v;
	int ret = env_trimmed(name, &v);

	if (ret || !v)
		return ret;
	p = v;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	for (; *p && ok; p++) {
		if (*p == '_') {
			ok = digits && !underscore;
			underscore = true;
		} else if (*p >= '0' && *p <= '9') {
			n = n > 1000000000ULL ? n : n * 10 + (*p - '0');
			digits = true;
			underscore = false;
		} else {
			ok = false;
		}
	}
	ok = ok && digits && !underscore;
	if (ok && !neg && n >= 1 && n <= 2592000)
		*member = (unsigned int)n;
	else
		fprintf(stderr,
			"pydi: ignoring %s='%s': not a whole number of seconds in 1..2592000\n",
			name, v);
	free(v);
	return 0;
}

/* OTEL_EXPORTER_OTLP_LOGS_COMPRESSION wins over the generic one, as the
 * OpenTelemetry SDK's environment rules say; "gzip" or "none". */
static int env_compression(struct agent_config *c)
{
	static const char *const names[] = {
		"OTEL_EXPORTER_OTLP_LOGS_COMPRESSION",
		"OTEL_EXPORTER_OTLP_COMPRESSION",
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *v;
		int ret = env_trimmed(names[i], &v);

		if (ret)
			return ret;
		if (!v)
			continue;
		if (!strcasecmp(v, "gzip"))
			c->otlp_gzip = true;
		else if (!strcasecmp(v, "none"))
			c->otlp_gzip = false;
		else
			fprintf(stderr,
				"pydi: ignoring %s='%s': expected gzip or none\n",
				names[i], v);
		free(v);
		return 0;
	}
	return 0;
}

static int load_env(struct agent_config *c)
{
	int ret;

	ret = env_string("OTEL_AWS_DYNAMIC_INSTRUMENTATION_API_URL",
			 &c->api_url);
	if (!ret)
		ret = env_string("OTEL_AWS_OTLP_LOGS_ENDPOINT",
				 &c->otlp_endpoint);
	if (!ret)
		ret = env_interval("OTEL_AWS_DYNAMIC_INSTRUMENTATION_BREAKPOINT_POLL_INTERVAL",
				   &c->breakpoint_poll_s);
	if (!ret)
		ret = env_interval("OTEL_AWS_DYNAMIC_INSTRUMENTATION_PROBE_POLL_INTERVAL",
				   &c->probe_poll_s);
	if (!ret)
		ret = env_compression(c);
	return ret;
}

int agent_config_load(const char *path, struct agent_config *c, char *err,
		      size_t err_len)
{
	int ret;

	ret = set_defaults(c);
	if (!ret && path)
		ret = load_file(path, c, err, err_len);
	if (!ret)
		ret = load_env(c);
	/* Talking to a DI API means exporting as ADOT does: its default
	 * logs endpoint. With neither, snapshots go to stdout as JSON lines
	 * (DESIGN: local sources only). */
	if (!ret && c->api_url && !c->otlp_endpoint) {
		c->otlp_endpoint = strdup(ADOT_DEFAULT_LOGS_ENDPOINT);
		if (!c->otlp_endpoint)
			ret = -ENOMEM;
	}
	if (!ret && !c->otlp_endpoint && !c->jsonl_path) {
		c->jsonl_path = strdup("-");
		if (!c->jsonl_path)
			ret = -ENOMEM;
	}
	if (ret) {
		if (ret == -ENOMEM)
			set_err(err, err_len, "agent config: out of memory");
		agent_config_free(c);
	}
	return ret;
}

void agent_config_free(struct agent_config *c)
{
	if (!c)
		return;
	free(c->api_url);
	free(c->otlp_endpoint);
	free(c->jsonl_path);
	free(c->config_dir);
	free(c->control_socket);
	free(c->metrics_listen);
	free_list(c->redact_names);
	free_list(c->redact_types);
	free(c->log_level);
	memset(c, 0, sizeof(*c));
}
