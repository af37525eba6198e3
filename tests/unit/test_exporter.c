// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#include <cmocka.h>

#include "exporter.h"
#include "metrics.h"

static const char *function_snapshot =
	"{\"id\":\"0b6c3c50-5d0e-4a53-9d42-1f3c0e6c9a11\",\"timestamp\":1700000000123,"
	"\"duration\":7,\"service\":\"orders\",\"environment\":\"prod\","
	"\"location_hash\":\"abc123\",\"instrumentation_type\":\"BREAKPOINT\","
	"\"instrumentation\":{\"location\":{\"code_unit\":\"shop.orders\","
	"\"class_name\":\"shop.orders.Cart\",\"method_name\":\"total\",\"line_number\":0,"
	"\"language\":\"python\",\"file_path\":\"/app/shop/orders.py\"}},"
	"\"thread\":{\"id\":4242,\"name\":\"uvicorn\"},"
	"\"stack\":[{\"function\":\"Cart.total\",\"file_path\":\"/app/shop/orders.py\","
	"\"line_number\":12}],"
	"\"captures\":{\"entry\":{\"arguments\":{\"qty\":{\"type\":\"int\",\"value\":\"3\"},"
	"\"flag\":true,\"ratio\":0.5,\"nothing\":null,\"n\":12345678901234,"
	"\"items\":{\"type\":\"list\",\"elements\":[{\"type\":\"str\",\"value\":\"a\"}],"
	"\"truncated\":true,\"size\":9}}},"
	"\"return\":{\"return_value\":{\"type\":\"NoneType\",\"is_null\":true}}},"
	"\"pid\":777,\"probe\":\"p-1\"}";

static json_t *load(const char *text)
{
	json_error_t error;
	json_t *v = json_loads(text, 0, &error);

	if (!v)
		fail_msg("test JSON: %s at %d", error.text, error.position);
	return v;
}

static json_t *snapshot_for(const char *service, const char *environment, int line)
{
	json_t *s = load(function_snapshot);

	json_object_set_new(s, "service", json_string(service));
	if (environment)
		json_object_set_new(s, "environment", json_string(environment));
	else
		json_object_del(s, "environment");
	json_object_set_new(json_object_get(json_object_get(s, "instrumentation"), "location"),
			    "line_number", json_integer(line));
	return s;
}

/* The AnyValue of attribute key in an OTLP attribute list, or NULL. */
static json_t *attr(json_t *attrs, const char *key)
{
	size_t i;
	json_t *kv;

	json_array_foreach(attrs, i, kv)
		if (strcmp(json_string_value(json_object_get(kv, "key")), key) == 0)
			return json_object_get(kv, "value");
	return NULL;
}

static const char *attr_string(json_t *attrs, const char *key)
{
	return json_string_value(json_object_get(attr(attrs, key), "stringValue"));
}

static const char *attr_intval(json_t *attrs, const char *key)
{
	return json_string_value(json_object_get(attr(attrs, key), "intValue"));
}

/* The value under key of an AnyValue kvlist. */
static json_t *kv_get(json_t *any, const char *key)
{
	return attr(json_object_get(json_object_get(any, "kvlistValue"), "values"), key);
}

static void test_otlp_groups_by_service_and_environment(void **state)
{
	json_t *snaps[4] = {
		snapshot_for("orders", "prod", 0), snapshot_for("billing", "prod", 0),
		snapshot_for("orders", "prod", 0), snapshot_for("orders", NULL, 0),
	};
	json_t *req, *rl, *res;

	(void)state;
	req = otlp_logs_request(snaps, 4);
	assert_non_null(req);
	rl = json_object_get(req, "resourceLogs");
	assert_int_equal(json_array_size(rl), 3);

	res = json_object_get(json_object_get(json_array_get(rl, 0), "resource"), "attributes");
	assert_string_equal(attr_string(res, "service.name"), "orders");
	assert_string_equal(attr_string(res, "deployment.environment.name"), "prod");
	{
		json_t *scope_logs = json_object_get(json_array_get(rl, 0), "scopeLogs");
		json_t *scope = json_object_get(json_array_get(scope_logs, 0), "scope");

		assert_int_equal(json_array_size(scope_logs), 1);
		assert_string_equal(json_string_value(json_object_get(scope, "name")),
				    "aws.dynamic_instrumentation");
		assert_int_equal(json_array_size(json_object_get(json_array_get(scope_logs, 0),
								 "logRecords")), 2);
	}
	res = json_object_get(json_object_get(json_array_get(rl, 1), "resource"), "attributes");
	assert_string_equal(attr_string(res, "service.name"), "billing");
	res = json_object_get(json_object_get(json_array_get(rl, 2), "resource"), "attributes");
	assert_string_equal(attr_string(res, "service.name"), "orders");
	assert_null(attr(res, "deployment.environment.name"));

	json_decref(req);
	for (int i = 0; i < 4; i++)
		json_decref(snaps[i]);
}

static json_t *only_record(json_t *req)
{
	json_t *rl = json_array_get(json_object_get(req, "resourceLogs"), 0);
	json_t *sl = json_array_get(json_object_get(rl, "scopeLogs"), 0);

	return json_array_get(json_object_get(sl, "logRecords"), 0);
}

static void test_otlp_record_carries_adot_attributes(void **state)
{
	json_t *snap = snapshot_for("orders", "prod", 0), *line_snap = snapshot_for("orders", "prod", 31);
	json_t *req = otlp_logs_request(&snap, 1), *line_req = otlp_logs_request(&line_snap, 1);
	json_t *rec = only_record(req), *attrs = json_object_get(rec, "attributes");

	(void)state;
	assert_string_equal(json_string_value(json_object_get(rec, "timeUnixNano")),
			    "1700000000123000000");
	assert_true(json_is_string(json_object_get(rec, "observedTimeUnixNano")));
	assert_int_equal(json_integer_value(json_object_get(rec, "severityNumber")), 9);
	assert_string_equal(json_string_value(json_object_get(rec, "severityText")), "INFO");
	assert_null(json_object_get(rec, "traceId"));
	assert_null(json_object_get(rec, "spanId"));

	assert_string_equal(attr_string(attrs, "event.name"), "aws.dynamic_instrumentation.snapshot");
	assert_string_equal(attr_string(attrs, "aws.di.snapshot_id"),
			    "0b6c3c50-5d0e-4a53-9d42-1f3c0e6c9a11");
	assert_string_equal(attr_string(attrs, "aws.di.location_hash"), "abc123");
	assert_string_equal(attr_string(attrs, "aws.di.instrumentation_level"), "method");
	assert_string_equal(attr_intval(attrs, "aws.di.duration_ms"), "7");
	assert_string_equal(attr_string(attrs, "aws.di.code_unit"), "shop.orders");
	assert_string_equal(attr_string(attrs, "aws.di.class_name"), "shop.orders.Cart");
	assert_string_equal(attr_string(attrs, "aws.di.method_name"), "total");
	assert_string_equal(attr_string(attrs, "aws.di.file_path"), "/app/shop/orders.py");
	assert_null(attr(attrs, "aws.di.line_number"));
	assert_string_equal(attr_string(attrs, "aws.di.instrumentation_type"), "BREAKPOINT");
	assert_string_equal(attr_intval(attrs, "thread.id"), "4242");
	assert_string_equal(attr_string(attrs, "thread.name"), "uvicorn");
	assert_string_equal(attr_intval(attrs, "process.pid"), "777");

	attrs = json_object_get(only_record(line_req), "attributes");
	assert_string_equal(attr_string(attrs, "aws.di.instrumentation_level"), "line");
	assert_string_equal(attr_intval(attrs, "aws.di.line_number"), "31");

	json_decref(req);
	json_decref(line_req);
	json_decref(snap);
	json_decref(line_snap);
}

static void test_otlp_body_is_stack_and_captures_as_anyvalue(void **state)
{
	json_t *snap = snapshot_for("orders", "prod", 0);
	json_t *req = otlp_logs_request(&snap, 1);
	json_t *body = json_object_get(only_record(req), "body");
	json_t *stack, *args, *v;

	(void)state;
	assert_int_equal(json_array_size(json_object_get(json_object_get(body, "kvlistValue"),
							 "values")), 2);
	stack = json_object_get(json_object_get(kv_get(body, "stack"), "arrayValue"), "values");
	assert_int_equal(json_array_size(stack), 1);
	assert_string_equal(json_string_value(json_object_get(kv_get(json_array_get(stack, 0),
							"function"), "stringValue")), "Cart.total");
	assert_string_equal(json_string_value(json_object_get(kv_get(json_array_get(stack, 0),
							"line_number"), "intValue")), "12");

	args = kv_get(kv_get(kv_get(body, "captures"), "entry"), "arguments");
	assert_non_null(args);
	v = kv_get(kv_get(args, "qty"), "value");
	assert_string_equal(json_string_value(json_object_get(v, "stringValue")), "3");
	assert_true(json_is_true(json_object_get(kv_get(args, "flag"), "boolValue")));
	assert_true(json_real_value(json_object_get(kv_get(args, "ratio"), "doubleValue")) == 0.5);
	assert_int_equal(json_object_size(kv_get(args, "nothing")), 0);
	assert_string_equal(json_string_value(json_object_get(kv_get(args, "n"), "intValue")),
			    "12345678901234");
	v = kv_get(args, "items");
	assert_string_equal(json_string_value(json_object_get(kv_get(v, "size"), "intValue")), "9");
	assert_int_equal(json_array_size(json_object_get(json_object_get(kv_get(v, "elements"),
							 "arrayValue"), "values")), 1);
	v = kv_get(kv_get(kv_get(body, "captures"), "return"), "return_value");
	assert_true(json_is_true(json_object_get(kv_get(v, "is_null"), "boolValue")));

	json_decref(req);
	json_decref(snap);
}

/* --- the running exporter -------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#define WAIT_FOR(ex, cond)							\
	do {									\
		struct exporter_counters c;					\
		uint64_t until = now_ms() + 3000;				\
		for (;;) {							\
			exporter_get_counters(ex, &c);				\
			if ((cond) || now_ms() > until)				\
				break;						\
			usleep(2000);						\
		}								\
		assert_true(cond);						\
	} while (0)

static char *temp_path(void)
{
	char *path = strdup("/tmp/pydi-test-exporter-XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	close(fd);
	return path;
}

static char *read_all(const char *path)
{
	FILE *f = fopen(path, "re");
	char *text = calloc(1, 1 << 20);
	size_t n;

	assert_non_null(f);
	n = fread(text, 1, (1 << 20) - 1, f);
	text[n] = '\0';
	fclose(f);
	return text;
}

/* A port nothing listens on: bound, never listening, so a connect is refused. */
static int refusing_port(int *fd_out)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*fd_out = fd;
	return ntohs(a.sin_port);
}

static void test_jsonl_lines_are_written_in_order(void **state)
{
	char *path = temp_path(), *text, *second;
	struct exporter_opts o = { .jsonl_path = path, .flush_ms = 10 };
	struct exporter *ex;
	char err[256];
	json_t *line;

	(void)state;
	assert_int_equal(exporter_start(&ex, &o, err, sizeof(err)), 0);
	exporter_submit_line(ex, json_pack("{s:s,s:s}", "type", "status", "status", "READY"));
	assert_true(exporter_submit(ex, snapshot_for("orders", "prod", 0)));
	WAIT_FOR(ex, c.written == 1);	/* snapshots only; the status went first */
	exporter_stop(ex, 1000);

	text = read_all(path);
	assert_true(strncmp(text, "{\"type\":\"status\",\"status\":\"READY\"}\n", 35) == 0);
	second = text + 35;
	assert_true(strncmp(second, "{\"type\":\"snapshot\",\"id\":", 24) == 0);
	assert_int_equal(strchr(second, '\n')[1], '\0');
	line = load(second);
	assert_int_equal(json_integer_value(json_object_get(line, "pid")), 777);
	json_decref(line);
	free(text);
	unlink(path);
	free(path);
}

static void test_size_cap_cuts_and_marks_truncated(void **state)
{
	char *path = temp_path(), *text;
	struct exporter_opts o = { .jsonl_path = path, .flush_ms = 10,
				   .max_snapshot_bytes = 4096 };
	struct exporter *ex;
	json_t *snap = snapshot_for("orders", "prod", 0), *line, *args;
	char *big = malloc(20000), err[256];

	(void)state;
	memset(big, 'x', 19999);
	big[19999] = '\0';
	args = json_object_get(json_object_get(json_object_get(snap, "captures"), "entry"),
			       "arguments");
	json_object_set_new(args, "blob", json_pack("{s:s,s:{s:{s:s,s:s}}}", "type", "Blob",
			    "fields", "data", "type", "str", "value", big));
	free(big);

	assert_int_equal(exporter_start(&ex, &o, err, sizeof(err)), 0);
	assert_true(exporter_submit(ex, snap));
	WAIT_FOR(ex, c.written == 1 && c.truncated == 1);
	exporter_stop(ex, 1000);

	text = read_all(path);
	assert_true(strlen(text) <= 4096 + 20);
	line = load(text);
	assert_true(json_is_true(json_object_get(line, "truncated")));
	args = json_object_get(json_object_get(json_object_get(line, "captures"), "entry"),
			       "arguments");
	/* The deepest value whose loss suffices goes; the rest stays. */
	assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(
		json_object_get(args, "blob"), "fields"), "data"), "not_captured_reason")),
		"snapshot_size");
	assert_string_equal(json_string_value(json_object_get(json_object_get(args, "qty"),
							      "value")), "3");
	json_decref(line);
	free(text);
	unlink(path);
	free(path);
}

static void test_full_queue_drops_and_counts(void **state)
{
	int blocker, port = refusing_port(&blocker), accepted = 0;
	char url[64], err[256];
	struct exporter_opts o = { .otlp_endpoint = url, .queue_max = 4, .batch_max = 100,
				   .flush_ms = 60000 };
	struct exporter *ex;
	struct exporter_counters c;

	(void)state;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/logs", port);
	assert_int_equal(exporter_start(&ex, &o, err, sizeof(err)), 0);
	for (int i = 0; i < 10; i++)
		accepted += exporter_submit(ex, snapshot_for("orders", "prod", 0));
	assert_int_equal(accepted, 4);
	exporter_get_counters(ex, &c);
	assert_int_equal(c.submitted, 10);
	assert_int_equal(c.dropped_queue_full, 6);
	exporter_stop(ex, 0);
	close(blocker);
}

static void test_lines_keep_flowing_while_the_otlp_backlog_is_full(void **state)
{
	int blocker, port = refusing_port(&blocker), accepted = 0;
	char url[64], err[256], *path = temp_path();
	struct exporter_opts o = { .otlp_endpoint = url, .jsonl_path = path, .queue_max = 4,
				   .batch_max = 100, .flush_ms = 60000 };
	struct exporter *ex;

	(void)state;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/logs", port);
	assert_int_equal(exporter_start(&ex, &o, err, sizeof(err)), 0);
	for (int i = 0; i < 10; i++) {
		accepted += exporter_submit(ex, snapshot_for("orders", "prod", 0));
		usleep(1000);
	}
	assert_int_equal(accepted, 10);
	WAIT_FOR(ex, c.written == 10 && c.dropped_queue_full == 6);
	exporter_stop(ex, 0);
	close(blocker);
	unlink(path);
	free(path);
}

static void test_unreachable_collector_is_retried_then_dropped(void **state)
{
	int blocker, port = refusing_port(&blocker);
	char url[64], err[256];
	struct exporter_opts o = { .otlp_endpoint = url, .flush_ms = 5, .max_attempts = 3,
				   .backoff_ms = 10 };
	struct exporter *ex;

	(void)state;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/logs", port);
	assert_int_equal(exporter_start(&ex, &o, err, sizeof(err)), 0);
	assert_true(exporter_submit(ex, snapshot_for("orders", "prod", 0)));
	WAIT_FOR(ex, c.dropped_export_failed == 1);
	WAIT_FOR(ex, c.export_errors == 3 && c.exported == 0);
	exporter_stop(ex, 0);
	close(blocker);
}

static void test_write_error_drops_and_counts(void **state)
{
	struct exporter_opts o = { .jsonl_path = "/dev/full", .flush_ms = 5 };
	struct exporter *ex;
	char err[256];

	(void)state;
	assert_int_equal(exporter_start(&ex, &o, err, sizeof(err)), 0);
	assert_true(exporter_submit(ex, snapshot_for("orders", "prod", 0)));
	exporter_submit_line(ex, json_pack("{s:s}", "type", "status"));
	WAIT_FOR(ex, c.dropped_write_failed == 1 && c.written == 0);
	exporter_stop(ex, 0);
}

/* --- a collector of our own ------------------------------------------------ */

struct collector {
	int fd, port;
	pthread_t thread;
	int statuses[4];	/* the answer to request i; the last one repeats */
	int nstatuses;
	int requests;		/* atomic */
	bool stop;		/* atomic */
	char *last_body;	/* inflated */
	bool last_gzip;
};

static char *inflate_gzip(const char *in, size_t len)
{
	z_stream z = { 0 };
	size_t cap = 1 << 22;
	char *out = calloc(1, cap);

	assert_int_equal(inflateInit2(&z, 15 + 16), Z_OK);
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)out;
	z.avail_out = (uInt)(cap - 1);
	assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
	inflateEnd(&z);
	return out;
}

static void collector_answer(struct collector *col, int fd)
{
	char head[8192], *body, *end, *cl;
	size_t len = 0, want, have;
	int i, status;

	head[0] = '\0';
	while (!(end = strstr(head, "\r\n\r\n"))) {
		ssize_t n = recv(fd, head + len, sizeof(head) - 1 - len, 0);

		if (n <= 0)
			return;
		len += (size_t)n;
		head[len] = '\0';
	}
	cl = strcasestr(head, "Content-Length:");
	want = cl ? strtoul(cl + 15, NULL, 10) : 0;
	body = malloc(want + 1);
	have = len - (size_t)(end + 4 - head);
	memcpy(body, end + 4, have);
	while (have < want) {
		ssize_t n = recv(fd, body + have, want - have, 0);

		if (n <= 0)
			break;
		have += (size_t)n;
	}
	body[have] = '\0';
	free(col->last_body);
	col->last_gzip = strcasestr(head, "Content-Encoding: gzip") != NULL;
	col->last_body = col->last_gzip ? inflate_gzip(body, have) : strdup(body);
	free(body);
	i = __atomic_fetch_add(&col->requests, 1, __ATOMIC_SEQ_CST);
	status = col->statuses[i < col->nstatuses ? i : col->nstatuses - 1];
	len = (size_t)snprintf(head, sizeof(head), "HTTP/1.1 %d X\r\nContent-Length: 2\r\n"
			       "Connection: close\r\n\r\n{}", status);
	send(fd, head, len, MSG_NOSIGNAL);
}

static void *collector_main(void *arg)
{
	struct collector *col = arg;

	while (!__atomic_load_n(&col->stop, __ATOMIC_SEQ_CST)) {
		struct pollfd p = { col->fd, POLLIN, 0 };
		int fd;

		if (poll(&p, 1, 20) <= 0)
			continue;
		fd = accept(col->fd, NULL, NULL);
		if (fd < 0)
			continue;
		collector_answer(col, fd);
		close(fd);
	}
	return NULL;
}

static void collector_start(struct collector *col, int nstatuses, const int *statuses)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);

	memset(col, 0, sizeof(*col));
	memcpy(col->statuses, statuses, (size_t)nstatuses * sizeof(int));
	col->nstatuses = nstatuses;
	col->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(col->fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(col->fd, 8), 0);
	assert_int_equal(getsockname(col->fd, (struct sockaddr *)&a, &len), 0);
	col->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(&col->thread, NULL, collector_main, col), 0);
}

static void collector_stop(struct collector *col)
{
	__atomic_store_n(&col->stop, true, __ATOMIC_SEQ_CST);
	pthread_join(col->thread, NULL);
	close(col->fd);
	free(col->last_body);
}

static void test_export_sends_gzip_otlp_json(void **state)
{
	struct collector col;
	char url[64], err[256];
	struct exporter_opts o = { .otlp_endpoint = url, .gzip = true, .batch_max = 3,
				   .flush_ms = 5 };
	struct exporter *ex;
	json_t *req;

	(void)state;
	collector_start(&col, 1, (int[]){ 200 });
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/logs", col.port);
	assert_int_equal(exporter_start(&ex, &o, err, sizeof(err)), 0);
	for (int i = 0; i < 3; i++)
		assert_true(exporter_submit(ex, snapshot_for("orders", "prod", 0)));
	WAIT_FOR(ex, c.exported == 3 && c.export_errors == 0);
	exporter_stop(ex, 1000);
	assert_true(col.last_gzip);
	req = load(col.last_body);
	assert_non_null(json_object_get(req, "resourceLogs"));
	json_decref(req);
	collector_stop(&col);
}

static void test_server_error_is_retried(void **state)
{
	struct collector col;
	char url[64], err[256];
	struct exporter_opts o = { .otlp_endpoint = url, .flush_ms = 5, .backoff_ms = 10 };
	struct exporter *ex;

	(void)state;
	collector_start(&col, 2, (int[]){ 503, 200 });
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/logs", col.port);
	assert_int_equal(exporter_start(&ex, &o, err, sizeof(err)), 0);
	assert_true(exporter_submit(ex, snapshot_for("orders", "prod", 0)));
	WAIT_FOR(ex, c.exported == 1 && c.export_errors == 1 && c.dropped_export_failed == 0);
	exporter_stop(ex, 1000);
	assert_int_equal(col.requests, 2);
	assert_false(col.last_gzip);
	collector_stop(&col);
}

static void test_client_error_is_not_retried(void **state)
{
	struct collector col;
	char url[64], err[256];
	struct exporter_opts o = { .otlp_endpoint = url, .flush_ms = 5, .backoff_ms = 10 };
	struct exporter *ex;

	(void)state;
	collector_start(&col, 1, (int[]){ 400 });
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/v1/logs", col.port);
	assert_int_equal(exporter_start(&ex, &o, err, sizeof(err)), 0);
	assert_true(exporter_submit(ex, snapshot_for("orders", "prod", 0)));
	WAIT_FOR(ex, c.dropped_export_failed == 1 && c.export_errors == 1);
	usleep(50 * 1000);
	exporter_stop(ex, 0);
	assert_int_equal(col.requests, 1);
	collector_stop(&col);
}

/* --- metrics --------------------------------------------------------------- */

static void http_get(int port, const char *path, char *out, size_t out_len)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t len = 0;
	char req[256];
	ssize_t n;

	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: x\r\n\r\n", path);
	assert_true(send(fd, req, strlen(req), 0) > 0);
	while (len + 1 < out_len && (n = recv(fd, out + len, out_len - 1 - len, 0)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(fd);
}

static void test_metrics_serves_the_published_page(void **state)
{
	struct metrics *m = NULL;
	char listen_on[64], err[256], resp[1024];
	int blocker, silent, port = -1;

	(void)state;
	/* A free port: take one, let it go, listen on it (retrying a race). */
	for (int tries = 0; tries < 5 && !m; tries++) {
		port = refusing_port(&blocker);
		close(blocker);
		snprintf(listen_on, sizeof(listen_on), "127.0.0.1:%d", port);
		if (metrics_start(&m, listen_on, err, sizeof(err)) < 0)
			m = NULL;
	}
	assert_non_null(m);
	metrics_publish(m, "pydi_snapshots_total 3\n");
	/* A client that says nothing does not hold up the next one. */
	{
		struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
		uint64_t t0;

		silent = socket(AF_INET, SOCK_STREAM, 0);
		assert_int_equal(connect(silent, (struct sockaddr *)&a, sizeof(a)), 0);
		t0 = now_ms();
		http_get(port, "/metrics", resp, sizeof(resp));
		assert_true(now_ms() - t0 < 1000);
	}
	assert_non_null(strstr(resp, "HTTP/1.0 200 OK\r\n"));
	assert_non_null(strstr(resp, "Content-Type: text/plain; version=0.0.4\r\n"));
	assert_non_null(strstr(resp, "\r\n\r\npydi_snapshots_total 3\n"));
	http_get(port, "/other", resp, sizeof(resp));
	assert_non_null(strstr(resp, "HTTP/1.0 404"));
	metrics_stop(m);
	close(silent);

	assert_int_equal(metrics_start(&m, "127.0.0.1", err, sizeof(err)), -EINVAL);
	assert_int_equal(metrics_start(&m, "::1:9464", err, sizeof(err)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_otlp_groups_by_service_and_environment),
		cmocka_unit_test(test_otlp_record_carries_adot_attributes),
		cmocka_unit_test(test_otlp_body_is_stack_and_captures_as_anyvalue),
		cmocka_unit_test(test_jsonl_lines_are_written_in_order),
		cmocka_unit_test(test_size_cap_cuts_and_marks_truncated),
		cmocka_unit_test(test_full_queue_drops_and_counts),
		cmocka_unit_test(test_lines_keep_flowing_while_the_otlp_backlog_is_full),
		cmocka_unit_test(test_unreachable_collector_is_retried_then_dropped),
		cmocka_unit_test(test_write_error_drops_and_counts),
		cmocka_unit_test(test_export_sends_gzip_otlp_json),
		cmocka_unit_test(test_server_error_is_retried),
		cmocka_unit_test(test_client_error_is_not_retried),
		cmocka_unit_test(test_metrics_serves_the_published_page),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
