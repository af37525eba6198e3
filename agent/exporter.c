// SPDX-License-Identifier: MIT
/*
 * The exporter: a bounded queue the capture path fills, and one thread that
 * empties it into JSON lines and OTLP/HTTP JSON log requests. The thread
 * drives libcurl's multi interface, so a request in flight or a retry
 * waiting out its backoff never holds up the JSON lines, and a submit wakes
 * it without ever waiting for it.
 */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "clock.h"
#include "errbuf.h"
#include "exporter.h"

#define DEFAULT_QUEUE_MAX	10000
#define DEFAULT_BATCH_MAX	256
#define DEFAULT_FLUSH_MS	1000
#define DEFAULT_TIMEOUT_MS	10000
#define DEFAULT_SNAPSHOT_BYTES	(1u << 20)
#define DEFAULT_ATTEMPTS	5
#define DEFAULT_BACKOFF_MS	500
#define BACKOFF_MAX_MS		30000
#define CONNECT_TIMEOUT_MS	5000
#define LINES_MAX		4096		/* status records waiting */
#define BATCH_BYTES_MAX		(4u << 20)	/* snapshot JSON per request */
#define RESPONSE_KEEP		256		/* response bytes kept for a message */
#define RESPONSE_MAX		(64u << 10)	/* more than this: stop reading */
#define CUT_ROUNDS		256

#define SCOPE_NAME		"aws.dynamic_instrumentation"
#define SCOPE_VERSION		"1.0"
#define EVENT_NAME		"aws.dynamic_instrumentation.snapshot"
#define SEVERITY_INFO		9
#define CUT_REASON		"snapshot_size"

#define COUNT(ex, field, n) __atomic_fetch_add(&(ex)->c.field, (n), __ATOMIC_RELAXED)

struct item {
	json_t *json;
	bool line_only;			/* a status record: JSON lines only */
};

struct pending {			/* a snapshot waiting for OTLP */
	json_t *snap;
	size_t bytes;			/* its compact encoding */
	uint64_t queued_ms;
};

struct request {			/* the batch in flight or waiting to retry */
	CURL *curl;
	struct curl_slist *headers;
	char *body;
	size_t body_len;
	size_t nsnap;			/* pend[0..nsnap) */
	unsigned int attempts;
	bool in_flight;
	bool retry_wait;
	uint64_t retry_at_ms;
	char response[RESPONSE_KEEP + 1];
	size_t response_len;
	size_t response_total;
	char curl_err[CURL_ERROR_SIZE];
};

struct exporter {
	char *endpoint;
	char *jsonl_path;
	bool gzip;
	size_t queue_max;
	size_t max_snapshot_bytes;
	unsigned int batch_max, flush_ms, timeout_ms, max_attempts, backoff_ms;

	/* shared with the callers, under lock */
	pthread_mutex_t lock;
	struct item *ring;		/* queue_max + LINES_MAX slots */
	size_t ring_cap, ring_head, ring_count;
	size_t snaps_waiting;		/* in the ring or in pend */
	size_t lines_waiting;		/* in the ring */
	bool stopping;
	uint64_t drain_deadline_ms;

	struct exporter_counters c;	/* atomics */
	CURLM *multi;			/* its wakeup is how a submit signals */

	/* the exporter thread's own */
	pthread_t thread;
	struct item *taken;		/* ring_cap slots */
	struct pending *pend;		/* queue_max slots */
	size_t npend;
	struct request req;
	int jsonl_fd;
	bool jsonl_is_file;
	uint64_t jsonl_dropped;		/* in the current error burst */
	uint64_t otlp_failed;		/* attempts in the current error burst */
	bool otlp_gave_up;		/* said so once in this burst */
};

/* --- OTLP JSON ------------------------------------------------------------ */

static const char *str_at(const json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	return json_is_string(v) ? json_string_value(v) : NULL;
}

static json_t *key_value(const char *key, json_t *value)
{
	return json_pack("{s:s,s:o}", "key", key, "value", value);
}

static json_t *int_value(json_int_t v)
{
	char text[32];

	/* int64 travels as a decimal string in OTLP's JSON mapping */
	snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, v);
	return json_pack("{s:s}", "intValue", text);
}

/* A JSON value as an OTLP AnyValue: objects become kvlists, null empty. */
static json_t *any_value(const json_t *v)
{
	json_t *values, *child;
	const char *key;
	size_t i;

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		values = json_array();
		json_object_foreach((json_t *)v, key, child)
			json_array_append_new(values, key_value(key, any_value(child)));
		return json_pack("{s:{s:o}}", "kvlistValue", "values", values);
	case JSON_ARRAY:
		values = json_array();
		json_array_foreach(v, i, child)
			json_array_append_new(values, any_value(child));
		return json_pack("{s:{s:o}}", "arrayValue", "values", values);
	case JSON_STRING:
		return json_pack("{s:s%}", "stringValue", json_string_value(v),
				 json_string_length(v));
	case JSON_INTEGER:
		return int_value(json_integer_value(v));
	case JSON_REAL:
		return json_pack("{s:f}", "doubleValue", json_real_value(v));
	case JSON_TRUE:
	case JSON_FALSE:
		return json_pack("{s:b}", "boolValue", json_is_true(v));
	default:
		return json_object();
	}
}

static void attr_str(json_t *attrs, const char *key, const char *value)
{
	json_array_append_new(attrs, key_value(key, json_pack("{s:s}", "stringValue", value)));
}

static void attr_int(json_t *attrs, const char *key, json_int_t value)
{
	json_array_append_new(attrs, key_value(key, int_value(value)));
}

static void attr_str_if(json_t *attrs, const char *key, const char *value)
{
	if (value && *value)
		attr_str(attrs, key, value);
}

static void attr_int_if(json_t *attrs, const char *key, const json_t *value)
{
	if (json_is_integer(value))
		attr_int(attrs, key, json_integer_value(value));
}

/* One snapshot as a log record, with the attributes ADOT's emitter sets. */
static json_t *log_record(const json_t *snap, const char *observed_ns)
{
	json_t *loc = json_object_get(json_object_get(snap, "instrumentation"), "location");
	json_t *thread = json_object_get(snap, "thread");
	json_t *ts = json_object_get(snap, "timestamp");
	json_t *attrs = json_array(), *body = json_object(), *rec, *v;
	json_int_t line = json_integer_value(json_object_get(loc, "line_number"));
	const char *hash = str_at(snap, "location_hash");
	const char *id = str_at(snap, "id");
	char time_ns[32];

	if (json_is_integer(ts) && json_integer_value(ts) >= 0)
		snprintf(time_ns, sizeof(time_ns), "%llu",
			 (unsigned long long)json_integer_value(ts) * 1000000ull);
	else
		snprintf(time_ns, sizeof(time_ns), "%s", observed_ns);

	attr_str(attrs, "event.name", EVENT_NAME);
	attr_str(attrs, "aws.di.snapshot_id", id ? id : "");
	attr_str(attrs, "aws.di.location_hash", hash ? hash : "");
	attr_str(attrs, "aws.di.instrumentation_level", line > 0 ? "line" : "method");
	attr_int_if(attrs, "aws.di.duration_ms", json_object_get(snap, "duration"));
	attr_str_if(attrs, "aws.di.code_unit", str_at(loc, "code_unit"));
	attr_str_if(attrs, "aws.di.class_name", str_at(loc, "class_name"));
	attr_str_if(attrs, "aws.di.method_name", str_at(loc, "method_name"));
	attr_str_if(attrs, "aws.di.file_path", str_at(loc, "file_path"));
	if (line > 0)
		attr_int(attrs, "aws.di.line_number", line);
	attr_str_if(attrs, "aws.di.instrumentation_type", str_at(snap, "instrumentation_type"));
	attr_int_if(attrs, "thread.id", json_object_get(thread, "id"));
	attr_str_if(attrs, "thread.name", str_at(thread, "name"));
	attr_int_if(attrs, "process.pid", json_object_get(snap, "pid"));
	attr_str_if(attrs, "pydi.probe.id", str_at(snap, "probe"));
	if (json_is_true(json_object_get(snap, "truncated")))
		json_array_append_new(attrs, key_value("pydi.truncated",
						       json_pack("{s:b}", "boolValue", 1)));

	rec = json_pack("{s:s,s:s,s:i,s:s,s:s}", "timeUnixNano", time_ns,
			"observedTimeUnixNano", observed_ns, "severityNumber", SEVERITY_INFO,
			"severityText", "INFO", "eventName", EVENT_NAME);
	/* The body is {stack, captures}, each only when it has something. */
	v = json_object_get(snap, "stack");
	if (json_array_size(v))
		json_object_set(body, "stack", v);
	v = json_object_get(snap, "captures");
	if (json_object_size(v))
		json_object_set(body, "captures", v);
	if (json_object_size(body))
		json_object_set_new(rec, "body", any_value(body));
	json_decref(body);
	json_object_set_new(rec, "attributes", attrs);
	return rec;
}

static json_t *resource_logs(const char *service, const char *environment,
			     json_t **records_out)
{
	json_t *attrs = json_array(), *records = json_array();

	attr_str(attrs, "service.name", service);
	if (environment)
		attr_str(attrs, "deployment.environment.name", environment);
	*records_out = records;
	return json_pack("{s:{s:o},s:[{s:{s:s,s:s},s:o}]}", "resource", "attributes", attrs,
			 "scopeLogs", "scope", "name", SCOPE_NAME, "version", SCOPE_VERSION,
			 "logRecords", records);
}

json_t *otlp_logs_request(json_t *const *snapshots, size_t n)
{
	struct group {
		const char *service;
		const char *environment;
		json_t *records;	/* borrowed from the resourceLogs entry */
	} *groups = calloc(n ? n : 1, sizeof(*groups));
	json_t *all = json_array();
	size_t ngroups = 0;
	struct timespec now;
	char observed_ns[32];

	if (!groups || !all) {
		free(groups);
		json_decref(all);
		return NULL;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	snprintf(observed_ns, sizeof(observed_ns), "%llu",
		 (unsigned long long)now.tv_sec * 1000000000ull + (unsigned long long)now.tv_nsec);
	for (size_t i = 0; i < n; i++) {
		const char *service = str_at(snapshots[i], "service");
		const char *environment = str_at(snapshots[i], "environment");
		size_t g;

		if (!service || !*service)
			service = "unknown_service";
		if (environment && !*environment)
			environment = NULL;
		for (g = 0; g < ngroups; g++) {
			const char *genv = groups[g].environment;

			if (strcmp(groups[g].service, service) == 0 &&
			    (genv && environment ? strcmp(genv, environment) == 0 : genv == environment))
				break;
		}
		if (g == ngroups) {
			groups[g].service = service;
			groups[g].environment = environment;
			json_array_append_new(all, resource_logs(service, environment,
								 &groups[g].records));
			ngroups++;
		}
		json_array_append_new(groups[g].records, log_record(snapshots[i], observed_ns));
	}
	free(groups);
	return json_pack("{s:o}", "resourceLogs", all);
}

/* --- the size cap ---------------------------------------------------------- */

struct cut {
	size_t excess;			/* bytes to shed */
	json_t *fits;			/* the smallest value at least that big */
	size_t fits_size;
	json_t *largest;
	size_t largest_size;
};

/* A captured value that still holds something: {type, value|fields|...}. */
static bool is_captured_value(json_t *v)
{
	return json_is_object(v) && json_is_string(json_object_get(v, "type")) &&
	       (json_object_get(v, "value") || json_object_get(v, "fields") ||
		json_object_get(v, "elements") || json_object_get(v, "entries"));
}

/* Size of a string as jansson's compact encoding writes it. */
static size_t string_size(const char *s, size_t len)
{
	size_t size = 2;

	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\' || ch == '\b' || ch == '\f' || ch == '\n' ||
		    ch == '\r' || ch == '\t')
			size += 2;
		else if (ch < 0x20)
			size += 6;
		else
			size += 1;
	}
	return size;
}

/* The compact encoding's size of v, without encoding it; notes the captured
 * values worth cutting when cut is given. */
static size_t measure(json_t *v, struct cut *cut)
{
	size_t size, n, i;
	const char *key;
	json_t *child;
	char num[32];

	switch (json_typeof(v)) {
	case JSON_OBJECT:
		n = json_object_size(v);
		size = 2 + (n ? n - 1 : 0);
		json_object_foreach(v, key, child)
			size += string_size(key, strlen(key)) + 1 + measure(child, cut);
		break;
	case JSON_ARRAY:
		n = json_array_size(v);
		size = 2 + (n ? n - 1 : 0);
		json_array_foreach(v, i, child)
			size += measure(child, cut);
		break;
	case JSON_STRING:
		return string_size(json_string_value(v), json_string_length(v));
	case JSON_INTEGER:
		return (size_t)snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT,
					json_integer_value(v));
	case JSON_REAL:
		return json_dumpb(v, NULL, 0, JSON_ENCODE_ANY | JSON_COMPACT);
	case JSON_FALSE:
		return 5;
	default:
		return 4;	/* true, null */
	}
	if (cut && is_captured_value(v)) {
		if (size >= cut->excess && (!cut->fits || size < cut->fits_size)) {
			cut->fits = v;
			cut->fits_size = size;
		}
		if (size > cut->largest_size) {
			cut->largest = v;
			cut->largest_size = size;
		}
	}
	return size;
}

static void cut_value(json_t *v)
{
	json_t *type = json_incref(json_object_get(v, "type"));

	json_object_clear(v);
	json_object_set_new(v, "type", type);
	json_object_set_new(v, "not_captured_reason", json_string(CUT_REASON));
}

/*
 * The encoded size of snap, cut down to max first if it is bigger: the
 * captured value whose loss alone suffices and is the smallest such (the
 * deepest), else the largest, until it fits; then, if still needed, all
 * captures and the stack. The snapshot says it was truncated.
 */
static size_t cap_snapshot(struct exporter *ex, json_t *snap)
{
	size_t size = measure(snap, NULL), max = ex->max_snapshot_bytes;
	json_t *captures;

	if (size <= max || !json_is_object(snap))
		return size;
	COUNT(ex, truncated, 1);
	json_object_set_new(snap, "truncated", json_true());
	size = measure(snap, NULL);
	captures = json_object_get(snap, "captures");
	for (int round = 0; captures && round < CUT_ROUNDS && size > max; round++) {
		struct cut cut = { .excess = size - max };
		json_t *victim;
		size_t before;

		measure(captures, &cut);
		victim = cut.fits ? cut.fits : cut.largest;
		if (!victim)
			break;
		before = cut.fits ? cut.fits_size : cut.largest_size;
		cut_value(victim);
		size = size - before + measure(victim, NULL);
	}
	if (size > max) {
		json_object_set_new(snap, "captures", json_object());
		json_object_del(snap, "stack");
		size = measure(snap, NULL);
	}
	return size;
}

/* --- JSON lines ------------------------------------------------------------ */

static int write_all(int fd, struct iovec *iov, int iovcnt, size_t *done)
{
	*done = 0;
	while (iovcnt > 0) {
		ssize_t n = writev(fd, iov, iovcnt);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		*done += (size_t)n;
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* Take back the start of a line that did not fit, so lines stay whole. */
static void unwrite(struct exporter *ex, size_t done)
{
	off_t end;

	if (!ex->jsonl_is_file || !done)
		return;
	end = lseek(ex->jsonl_fd, 0, SEEK_END);
	if (end >= (off_t)done && ftruncate(ex->jsonl_fd, end - (off_t)done) < 0) {
		/* nothing better to do: the next line starts mid-line */
	}
}

static const char *sink_name(const struct exporter *ex)
{
	return strcmp(ex->jsonl_path, "-") == 0 ? "stdout" : ex->jsonl_path;
}

/* One record as a line; the counters are about snapshots only. */
static void write_line(struct exporter *ex, const json_t *record, bool snapshot)
{
	char *text = json_dumps(record, JSON_COMPACT | JSON_ENCODE_ANY);
	struct iovec iov[2];
	size_t done = 0;
	int rc;

	if (!text) {
		rc = -ENOMEM;
	} else {
		iov[0] = (struct iovec){ text, strlen(text) };
		iov[1] = (struct iovec){ "\n", 1 };
		rc = write_all(ex->jsonl_fd, iov, 2, &done);
		free(text);
	}
	if (rc < 0) {
		if (rc == -EPIPE) {
			/* This thread blocks signals: take back the SIGPIPE. */
			sigset_t pipe_set;
			struct timespec zero = { 0, 0 };

			sigemptyset(&pipe_set);
			sigaddset(&pipe_set, SIGPIPE);
			sigtimedwait(&pipe_set, NULL, &zero);
		}
		unwrite(ex, done);
		if (snapshot)
			COUNT(ex, dropped_write_failed, 1);
		if (!ex->jsonl_dropped++)
			fprintf(stderr, "pydi: exporter: writing JSON lines to %s: %s; "
				"dropping lines until writes succeed again\n",
				sink_name(ex), strerror(-rc));
		return;
	}
	if (ex->jsonl_dropped) {
		fprintf(stderr, "pydi: exporter: writing JSON lines to %s again "
			"(%llu dropped)\n", sink_name(ex),
			(unsigned long long)ex->jsonl_dropped);
		ex->jsonl_dropped = 0;
	}
	if (snapshot)
		COUNT(ex, written, 1);
}

static void write_snapshot_line(struct exporter *ex, json_t *snap)
{
	json_t *line = json_pack("{s:s}", "type", "snapshot");

	if (!line || json_object_update(line, snap) < 0) {
		json_decref(line);
		COUNT(ex, dropped_write_failed, 1);
		return;
	}
	write_line(ex, line, true);
	json_decref(line);
}

/* --- OTLP requests --------------------------------------------------------- */

static void release_snapshots(struct exporter *ex, size_t n)
{
	pthread_mutex_lock(&ex->lock);
	ex->snaps_waiting -= n;
	pthread_mutex_unlock(&ex->lock);
}

/* Forget the first n pending snapshots (sent, or given up on). */
static void pop_pending(struct exporter *ex, size_t n)
{
	for (size_t i = 0; i < n; i++)
		json_decref(ex->pend[i].snap);
	memmove(ex->pend, ex->pend + n, (ex->npend - n) * sizeof(*ex->pend));
	ex->npend -= n;
	release_snapshots(ex, n);
}

static void finish_batch(struct exporter *ex)
{
	struct request *r = &ex->req;

	pop_pending(ex, r->nsnap);
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
	r->nsnap = 0;
	r->attempts = 0;
	r->retry_wait = false;
}

static int gzip_body(const char *in, size_t len, char **out, size_t *out_len)
{
	z_stream z = { 0 };
	size_t cap;
	char *buf;
	int rc;

	if (len > UINT_MAX)
		return -E2BIG;
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8,
			 Z_DEFAULT_STRATEGY) != Z_OK)
		return -ENOMEM;
	cap = deflateBound(&z, len);
	buf = malloc(cap);
	if (!buf) {
		deflateEnd(&z);
		return -ENOMEM;
	}
	z.next_in = (Bytef *)in;
	z.avail_in = (uInt)len;
	z.next_out = (Bytef *)buf;
	z.avail_out = (uInt)cap;
	rc = deflate(&z, Z_FINISH);
	*out_len = z.total_out;
	deflateEnd(&z);
	if (rc != Z_STREAM_END) {
		free(buf);
		return -EIO;
	}
	*out = buf;
	return 0;
}

/* The next batch's request body: up to batch_max snapshots and about
 * BATCH_BYTES_MAX of them. */
static int build_batch(struct exporter *ex)
{
	struct request *r = &ex->req;
	size_t n = 0, bytes = 0;
	json_t **snaps, *request;
	char *text;
	int rc = 0;

	while (n < ex->npend && n < ex->batch_max &&
	       (n == 0 || bytes + ex->pend[n].bytes <= BATCH_BYTES_MAX))
		bytes += ex->pend[n++].bytes;
	r->nsnap = n;
	snaps = malloc(n * sizeof(*snaps));
	if (!snaps)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		snaps[i] = ex->pend[i].snap;
	request = otlp_logs_request(snaps, n);
	free(snaps);
	text = request ? json_dumps(request, JSON_COMPACT) : NULL;
	json_decref(request);
	if (!text)
		return -ENOMEM;
	if (ex->gzip) {
		rc = gzip_body(text, strlen(text), &r->body, &r->body_len);
		free(text);
	} else {
		r->body = text;
		r->body_len = strlen(text);
	}
	return rc;
}

static size_t keep_response(char *data, size_t size, size_t nmemb, void *ctx)
{
	struct request *r = ctx;
	size_t len = size * nmemb, keep = RESPONSE_KEEP - r->response_len;

	/* The collector is not trusted: keep a little, read a bounded amount. */
	if (keep > len)
		keep = len;
	for (size_t i = 0; i < keep; i++)	/* it goes into a log line */
		r->response[r->response_len++] = data[i] >= 0x20 && data[i] < 0x7f ?
						  data[i] : ' ';
	r->response[r->response_len] = '\0';
	r->response_total += len;
	return r->response_total > RESPONSE_MAX ? 0 : len;
}

static void attempt_failed(struct exporter *ex, const char *why, bool retryable,
			   uint64_t retry_after_ms);

static void send_batch(struct exporter *ex)
{
	struct request *r = &ex->req;

	r->response_len = r->response_total = 0;
	r->response[0] = r->curl_err[0] = '\0';
	curl_easy_setopt(r->curl, CURLOPT_POSTFIELDS, r->body);
	curl_easy_setopt(r->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
	r->retry_wait = false;
	r->attempts++;
	if (curl_multi_add_handle(ex->multi, r->curl) != CURLM_OK) {
		attempt_failed(ex, "cannot start the request", true, 0);
		return;
	}
	r->in_flight = true;
}

static unsigned int backoff(struct exporter *ex, unsigned int attempts)
{
	uint64_t delay = ex->backoff_ms;

	for (unsigned int i = 1; i < attempts && delay < BACKOFF_MAX_MS; i++)
		delay *= 2;
	if (delay > BACKOFF_MAX_MS)
		delay = BACKOFF_MAX_MS;
	/* Jitter: half fixed, half random, so agents do not retry in step. */
	return (unsigned int)(delay / 2 + (uint64_t)random() % (delay / 2 + 1));
}

static void give_up(struct exporter *ex, const char *why)
{
	struct request *r = &ex->req;

	COUNT(ex, dropped_export_failed, r->nsnap);
	if (!ex->otlp_gave_up) {
		fprintf(stderr, "pydi: exporter: dropping %zu snapshot(s) for %s after %u "
			"attempt(s): %s\n", r->nsnap, ex->endpoint, r->attempts, why);
		ex->otlp_gave_up = true;
	}
	finish_batch(ex);
}

/* One attempt failed: retry after a backoff, or give up on the batch. */
static void attempt_failed(struct exporter *ex, const char *why, bool retryable,
			   uint64_t retry_after_ms)
{
	struct request *r = &ex->req;
	uint64_t delay;

	COUNT(ex, export_errors, 1);
	if (!ex->otlp_failed++)
		fprintf(stderr, "pydi: exporter: POST %s: %s\n", ex->endpoint, why);
	if (!retryable || r->attempts >= ex->max_attempts) {
		give_up(ex, why);
		return;
	}
	delay = backoff(ex, r->attempts);
	if (retry_after_ms > delay)
		delay = retry_after_ms < BACKOFF_MAX_MS ? retry_after_ms : BACKOFF_MAX_MS;
	r->retry_wait = true;
	r->retry_at_ms = monotonic_ms() + delay;
}

/* A request came back: done, retry later, or give up on its batch. */
static void request_done(struct exporter *ex, CURLcode res)
{
	struct request *r = &ex->req;
	bool read_enough = res == CURLE_WRITE_ERROR && r->response_total > RESPONSE_MAX;
	curl_off_t retry_after = 0;
	long status = 0;
	char why[RESPONSE_KEEP + 64];

	curl_easy_getinfo(r->curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(r->curl, CURLINFO_RETRY_AFTER, &retry_after);
	curl_multi_remove_handle(ex->multi, r->curl);
	r->in_flight = false;

	if ((res == CURLE_OK || read_enough) && status >= 200 && status < 300) {
		COUNT(ex, exported, r->nsnap);
		if (ex->otlp_failed)
			fprintf(stderr, "pydi: exporter: OTLP export to %s works again "
				"(%llu failed attempts)\n", ex->endpoint,
				(unsigned long long)ex->otlp_failed);
		ex->otlp_failed = 0;
		ex->otlp_gave_up = false;
		finish_batch(ex);
		return;
	}
	if (res == CURLE_OK || read_enough) {
		snprintf(why, sizeof(why), "HTTP %ld %s", status, r->response);
		/* Only transport errors, 429 and 5xx can succeed on a retry. */
		if (status != 429 && status < 500) {
			attempt_failed(ex, why, false, 0);
			return;
		}
	} else {
		snprintf(why, sizeof(why), "%s", r->curl_err[0] ? r->curl_err :
			 curl_easy_strerror(res));
	}
	attempt_failed(ex, why, true, retry_after > 0 ? (uint64_t)retry_after * 1000 : 0);
}

/* Start a batch or a retry when one is due; says when to look again. */
static void schedule(struct exporter *ex, bool stopping, uint64_t now, uint64_t *wake_ms)
{
	struct request *r = &ex->req;

	if (!r->curl || r->in_flight)
		return;
	if (r->retry_wait) {
		if (now >= r->retry_at_ms)
			send_batch(ex);
		else if (r->retry_at_ms < *wake_ms)
			*wake_ms = r->retry_at_ms;
		return;
	}
	if (!ex->npend)
		return;
	if (ex->npend >= ex->batch_max || stopping ||
	    now >= ex->pend[0].queued_ms + ex->flush_ms) {
		if (build_batch(ex) < 0) {
			give_up(ex, "cannot build the request (out of memory)");
			return;
		}
		send_batch(ex);
	} else if (ex->pend[0].queued_ms + ex->flush_ms < *wake_ms) {
		*wake_ms = ex->pend[0].queued_ms + ex->flush_ms;
	}
}

static void check_requests(struct exporter *ex)
{
	CURLMsg *msg;
	int running, left;

	if (!ex->req.in_flight)
		return;
	curl_multi_perform(ex->multi, &running);
	while ((msg = curl_multi_info_read(ex->multi, &left)))
		if (msg->msg == CURLMSG_DONE && msg->easy_handle == ex->req.curl)
			request_done(ex, msg->data.result);
}

/* --- the thread ------------------------------------------------------------ */

/* Everything the callers queued, into JSON lines and the OTLP batch. */
static void take_queued(struct exporter *ex, bool *stopping, uint64_t *deadline_ms)
{
	size_t n;

	pthread_mutex_lock(&ex->lock);
	n = ex->ring_count;
	for (size_t i = 0; i < n; i++)
		ex->taken[i] = ex->ring[(ex->ring_head + i) % ex->ring_cap];
	ex->ring_head = (ex->ring_head + n) % ex->ring_cap;
	ex->ring_count = 0;
	ex->lines_waiting = 0;
	*stopping = ex->stopping;
	*deadline_ms = ex->drain_deadline_ms;
	pthread_mutex_unlock(&ex->lock);

	for (size_t i = 0; i < n; i++) {
		json_t *json = ex->taken[i].json;
		size_t bytes;

		if (ex->taken[i].line_only) {
			if (ex->jsonl_fd >= 0)
				write_line(ex, json, false);
			json_decref(json);
			continue;
		}
		bytes = cap_snapshot(ex, json);
		if (ex->jsonl_fd >= 0)
			write_snapshot_line(ex, json);
		if (ex->req.curl && ex->npend < ex->queue_max) {
			ex->pend[ex->npend++] = (struct pending){ json, bytes, monotonic_ms() };
			continue;
		}
		/* Written as a line, but the OTLP backlog is full (see enqueue). */
		if (ex->req.curl)
			COUNT(ex, dropped_queue_full, 1);
		json_decref(json);
		release_snapshots(ex, 1);
	}
}

/* Out of time while stopping: what is still unsent is lost. */
static void abandon(struct exporter *ex)
{
	struct request *r = &ex->req;

	if (r->in_flight) {
		curl_multi_remove_handle(ex->multi, r->curl);
		r->in_flight = false;
	}
	COUNT(ex, dropped_export_failed, ex->npend);
	if (ex->npend)
		fprintf(stderr, "pydi: exporter: stopping with %zu snapshot(s) not "
			"exported to %s\n", ex->npend, ex->endpoint);
	free(r->body);
	r->body = NULL;
	r->nsnap = 0;
	r->retry_wait = false;
	pop_pending(ex, ex->npend);
}

static void *exporter_main(void *arg)
{
	struct exporter *ex = arg;

	for (;;) {
		bool stopping;
		uint64_t deadline_ms, now, wake_ms;
		int timeout;

		take_queued(ex, &stopping, &deadline_ms);
		check_requests(ex);
		now = monotonic_ms();
		if (stopping && now >= deadline_ms) {
			abandon(ex);
			break;
		}
		wake_ms = now + 1000;
		schedule(ex, stopping, now, &wake_ms);
		check_requests(ex);
		if (stopping && !ex->npend && !ex->req.in_flight)
			break;
		if (stopping && deadline_ms < wake_ms)
			wake_ms = deadline_ms;
		/* curl's own timers shorten the wait while a request runs */
		timeout = wake_ms > now ? (int)(wake_ms - now) : 0;
		curl_multi_poll(ex->multi, NULL, 0, timeout, NULL);
	}
	return NULL;
}

/* --- API ------------------------------------------------------------------- */

static int setup_curl(struct exporter *ex)
{
	struct request *r = &ex->req;
	struct curl_slist *h;

	r->curl = curl_easy_init();
	if (!r->curl)
		return -ENOMEM;
	h = curl_slist_append(NULL, "Content-Type: application/json");
	if (h && ex->gzip)
		h = curl_slist_append(h, "Content-Encoding: gzip");
	if (h)
		h = curl_slist_append(h, "Expect:");
	if (!h)
		return -ENOMEM;
	r->headers = h;
	curl_easy_setopt(r->curl, CURLOPT_URL, ex->endpoint);
	curl_easy_setopt(r->curl, CURLOPT_HTTPHEADER, r->headers);
	curl_easy_setopt(r->curl, CURLOPT_POST, 1L);
	curl_easy_setopt(r->curl, CURLOPT_USERAGENT, "pydi");
	curl_easy_setopt(r->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(r->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(r->curl, CURLOPT_TIMEOUT_MS, (long)ex->timeout_ms);
	curl_easy_setopt(r->curl, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(ex->timeout_ms < CONNECT_TIMEOUT_MS ? ex->timeout_ms :
				CONNECT_TIMEOUT_MS));
	curl_easy_setopt(r->curl, CURLOPT_WRITEFUNCTION, keep_response);
	curl_easy_setopt(r->curl, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(r->curl, CURLOPT_ERRORBUFFER, r->curl_err);
	return 0;
}

static void exporter_free(struct exporter *ex)
{
	if (ex->ring) {
		for (size_t i = 0; i < ex->ring_count; i++)
			json_decref(ex->ring[(ex->ring_head + i) % ex->ring_cap].json);
	}
	for (size_t i = 0; i < ex->npend; i++)
		json_decref(ex->pend[i].snap);
	if (ex->req.curl)
		curl_easy_cleanup(ex->req.curl);
	curl_slist_free_all(ex->req.headers);
	free(ex->req.body);
	if (ex->multi) {
		curl_multi_cleanup(ex->multi);
		curl_global_cleanup();
	}
	if (ex->jsonl_fd >= 0 && ex->jsonl_fd != STDOUT_FILENO)
		close(ex->jsonl_fd);
	pthread_mutex_destroy(&ex->lock);
	free(ex->ring);
	free(ex->taken);
	free(ex->pend);
	free(ex->endpoint);
	free(ex->jsonl_path);
	free(ex);
}

int exporter_start(struct exporter **out, const struct exporter_opts *o,
		   char *err, size_t err_len)
{
	struct exporter *ex = calloc(1, sizeof(*ex));
	sigset_t all, old;
	int rc;

	*out = NULL;
	if (!ex)
		return -ENOMEM;
	ex->jsonl_fd = -1;
	pthread_mutex_init(&ex->lock, NULL);
	ex->gzip = o->gzip;
	ex->queue_max = o->queue_max ? o->queue_max : DEFAULT_QUEUE_MAX;
	ex->batch_max = o->batch_max ? o->batch_max : DEFAULT_BATCH_MAX;
	ex->flush_ms = o->flush_ms ? o->flush_ms : DEFAULT_FLUSH_MS;
	ex->timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	ex->max_snapshot_bytes = o->max_snapshot_bytes ? o->max_snapshot_bytes :
			       DEFAULT_SNAPSHOT_BYTES;
	ex->max_attempts = o->max_attempts ? o->max_attempts : DEFAULT_ATTEMPTS;
	ex->backoff_ms = o->backoff_ms ? o->backoff_ms : DEFAULT_BACKOFF_MS;
	ex->ring_cap = ex->queue_max + LINES_MAX;
	ex->ring = calloc(ex->ring_cap, sizeof(*ex->ring));
	ex->taken = calloc(ex->ring_cap, sizeof(*ex->taken));
	ex->pend = calloc(ex->queue_max, sizeof(*ex->pend));
	ex->endpoint = o->otlp_endpoint ? strdup(o->otlp_endpoint) : NULL;
	ex->jsonl_path = o->jsonl_path ? strdup(o->jsonl_path) : NULL;
	if (!ex->ring || !ex->taken || !ex->pend || (o->otlp_endpoint && !ex->endpoint) ||
	    (o->jsonl_path && !ex->jsonl_path)) {
		set_err(err, err_len, "exporter: out of memory for a queue of %zu",
			ex->queue_max);
		rc = -ENOMEM;
		goto fail;
	}

	if (ex->jsonl_path && strcmp(ex->jsonl_path, "-") == 0) {
		ex->jsonl_fd = STDOUT_FILENO;
	} else if (ex->jsonl_path) {
		struct stat st;

		ex->jsonl_fd = open(ex->jsonl_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC,
				    0640);
		if (ex->jsonl_fd < 0) {
			rc = -errno;
			set_err(err, err_len, "exporter: opening %s: %s", ex->jsonl_path,
				strerror(-rc));
			goto fail;
		}
		ex->jsonl_is_file = fstat(ex->jsonl_fd, &st) == 0 && S_ISREG(st.st_mode);
	}

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		set_err(err, err_len, "exporter: cannot initialize libcurl");
		rc = -ENOMEM;
		goto fail;
	}
	ex->multi = curl_multi_init();
	if (!ex->multi) {
		curl_global_cleanup();
		set_err(err, err_len, "exporter: cannot initialize libcurl");
		rc = -ENOMEM;
		goto fail;
	}
	if (ex->endpoint && (rc = setup_curl(ex)) < 0) {
		set_err(err, err_len, "exporter: setting up requests to %s: %s",
			ex->endpoint, strerror(-rc));
		goto fail;
	}

	/* Signals are for the agent's main thread; a broken pipe here is an
	 * EPIPE to count, not a reason to die. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&ex->thread, NULL, exporter_main, ex);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0) {
		set_err(err, err_len, "exporter: starting its thread: %s", strerror(-rc));
		goto fail;
	}
	*out = ex;
	return 0;
fail:
	exporter_free(ex);
	return rc;
}

void exporter_stop(struct exporter *ex, unsigned int drain_ms)
{
	if (!ex)
		return;
	pthread_mutex_lock(&ex->lock);
	ex->stopping = true;
	ex->drain_deadline_ms = monotonic_ms() + drain_ms;
	pthread_mutex_unlock(&ex->lock);
	curl_multi_wakeup(ex->multi);
	pthread_join(ex->thread, NULL);
	exporter_free(ex);
}

static bool enqueue(struct exporter *ex, json_t *json, bool line_only)
{
	bool queued = false, wake = false;

	pthread_mutex_lock(&ex->lock);
	/*
	 * Snapshots waiting for OTLP count against queue_max too, so an
	 * OTLP-only exporter refuses at the door while the collector is down.
	 * With JSON lines as well, only the ring is bounded here: the lines
	 * keep flowing and the thread drops what the OTLP backlog cannot take.
	 */
	if (line_only ? ex->lines_waiting < LINES_MAX :
	    ex->ring_count - ex->lines_waiting < ex->queue_max &&
	    (ex->jsonl_fd >= 0 || ex->snaps_waiting < ex->queue_max)) {
		ex->ring[(ex->ring_head + ex->ring_count) % ex->ring_cap] =
			(struct item){ json, line_only };
		/* The thread takes the whole ring at once: only the first
		 * item after it did needs to wake it. */
		wake = ex->ring_count++ == 0;
		if (line_only)
			ex->lines_waiting++;
		else
			ex->snaps_waiting++;
		queued = true;
	}
	pthread_mutex_unlock(&ex->lock);
	if (wake)
		curl_multi_wakeup(ex->multi);
	return queued;
}

bool exporter_submit(struct exporter *ex, json_t *snapshot)
{
	if (!ex || !snapshot) {
		json_decref(snapshot);
		return false;
	}
	COUNT(ex, submitted, 1);
	if (enqueue(ex, snapshot, false))
		return true;
	COUNT(ex, dropped_queue_full, 1);
	json_decref(snapshot);
	return false;
}

void exporter_submit_line(struct exporter *ex, json_t *record)
{
	if (!ex || !record) {
		json_decref(record);
		return;
	}
	/* More than LINES_MAX statuses waiting: the agent is far behind;
	 * the periodic status sweep sends them again. */
	if (!ex->jsonl_path || !enqueue(ex, record, true))
		json_decref(record);
}

void exporter_get_counters(struct exporter *ex, struct exporter_counters *c)
{
	if (!ex) {
		memset(c, 0, sizeof(*c));
		return;
	}
#define LOAD(field) c->field = __atomic_load_n(&ex->c.field, __ATOMIC_RELAXED)
	LOAD(submitted);
	LOAD(exported);
	LOAD(written);
	LOAD(dropped_queue_full);
	LOAD(dropped_export_failed);
	LOAD(dropped_write_failed);
	LOAD(export_errors);
	LOAD(truncated);
#undef LOAD
}
