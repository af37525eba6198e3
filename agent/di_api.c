// SPDX-License-Identifier: MIT
/*
 * The DI API client. One thread owns a curl multi handle and every
 * transfer, so list polls for many services and the status reports run
 * side by side without one slow request holding up the rest; callers only
 * take the mutex to queue work and collect results.
 *
 * What is ADOT's and what is ours: the endpoints, request and response
 * field names, SyncedAt echo, Changed/SyncInterval, 404 meaning "no
 * configurations", the default intervals and the 10/30/120 s then 300 s
 * backoff steps are ADOT's debugger client. Ours: a failure streak backs
 * off the same way after a success too (ADOT only does it before the first
 * success), no step is ever longer than 10x the poll interval (so a 1 s
 * interval recovers within 10 s), jitter is 0-5 % (ADOT: 0-25 %), the first
 * poll happens at once, lists are followed to the last page (ADOT stops at
 * three), an unchanged list is not handed out twice, and failed reports are
 * retried.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "clock.h"
#include "di_api.h"
#include "errbuf.h"

#define LIST_PATH "/list-instrumentation-configurations"
#define REPORT_PATH "/report-instrumentation-configuration-status"

#define REPORT_BATCH_MAX 100	/* entries per report request (ADOT's) */
#define REPORT_QUEUE_MAX 10000	/* beyond it the oldest entry is dropped */
#define REPORT_COALESCE_MS 50	/* lets a burst of reports share a request */
#define MAX_PAGES 50		/* a longer list is an error, not a hang */
#define MAX_POLLS_INFLIGHT 8
#define JITTER_PERCENT 5
#define SYNC_INTERVAL_MAX_S 86400
#define CONNECT_TIMEOUT_MAX_MS 5000
#define IDLE_WAKE_MS 1000

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_MAX_RESPONSE (4u << 20)

enum { T_BREAKPOINT, T_PROBE, T_COUNT };
static const char *const type_names[T_COUNT] = { "BREAKPOINT", "PROBE" };
static const unsigned int default_poll_s[T_COUNT] = { 60, 600 };

/* seconds after the 1st, 2nd, 3rd, 4th+ failure in a row (ADOT's steps) */
static const unsigned int poll_backoff_s[] = { 10, 30, 120, 300 };
static const unsigned int report_backoff_s[] = { 1, 2, 5, 10, 30 };

struct report_entry {
	TAILQ_ENTRY(report_entry) link;
	char *service;
	char *environment;
	char *type;
	char *location_hash;
	char *status;
	char *error_cause;	/* NULL: none */
	int64_t time_s;
	uint64_t queued_ms;
};
TAILQ_HEAD(report_queue, report_entry);

struct resp_buf {
	char *data;
	size_t len;
	size_t cap;
};

struct poll_state;
struct watch;

/* One HTTP request: a page of a list or a batch of status entries. */
struct xfer {
	struct di_api *api;
	CURL *easy;
	struct curl_slist *headers;
	char *body;
	struct resp_buf resp;
	bool too_big;
	struct watch *watch;		/* a list page ... */
	struct poll_state *poll;
	struct report_queue batch;	/* ... or a report batch */
	unsigned int batch_len;
};

/* One (service, environment, type): schedule, sync state, page assembly. */
struct poll_state {
	unsigned int type;
	unsigned int interval_s;	/* configured, or the server's SyncInterval */
	uint64_t due_ms;
	unsigned int failures;		/* in a row */
	json_t *synced_at;		/* echoed back as SyncedAt */
	json_t *delivered;		/* the last list handed out; NULL: none */
	char *fail_state;		/* last failure logged; NULL: healthy */
	struct xfer *inflight;
	/* the list being assembled (acc != NULL while paging) */
	json_t *acc;
	json_t *acc_synced_at;
	unsigned int acc_sync_interval_s;
	unsigned int acc_pages;
	char *next_token;
};

struct watch {
	struct watch *next;
	char *service;
	char *environment;
	bool removed;			/* the thread frees it */
	struct poll_state ps[T_COUNT];
};

struct di_api {
	pthread_mutex_t lock;
	pthread_t thread;
	bool thread_started;
	bool stopping;			/* also read by the progress callback */
	int wake_fd;			/* wakes the thread */
	int updates_fd;			/* readable while updates wait */
	char *base_url;
	unsigned int poll_s[T_COUNT];
	unsigned int timeout_ms;
	size_t max_response_bytes;
	uint64_t rng;

	/* below: under lock */
	struct watch *watches;
	struct di_update *updates;
	struct report_queue reports;
	size_t nreports;
	bool overflow_logged;
	struct di_api_counters counters;

	/* below: the thread's alone */
	CURLM *multi;
	unsigned int polls_inflight;
	struct xfer *report_inflight;
	uint64_t report_due_ms;
	unsigned int report_failures;
	char *report_fail_state;
};

/* ---- parsing (pure) ---------------------------------------------------- */

struct list_page {
	json_t *configs;
	bool changed;
	char *next_token;
	unsigned int sync_interval_s;
	unsigned int skipped;
	json_t *synced_at;		/* number or string, or NULL */
};

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "an array";
	case JSON_STRING: return "a string";
	case JSON_INTEGER:
	case JSON_REAL: return "a number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	default: return "null";
	}
}

/* The first of two spellings that is present and not null. */
static json_t *field(json_t *obj, const char *name, const char *alias)
{
	json_t *v = json_object_get(obj, name);

	if ((!v || json_is_null(v)) && alias)
		v = json_object_get(obj, alias);
	return v && !json_is_null(v) ? v : NULL;
}

/*
 * One LatestConfigurations entry, normalised in place: ConfigurationData
 * given as a JSON string becomes the object it holds, AttributeFilters
 * null becomes []. false: skip the entry.
 */
static bool normalize_config(json_t *item)
{
	json_t *data, *filters;

	if (!json_is_object(item))
		return false;
	data = json_object_get(item, "ConfigurationData");
	if (data && json_is_string(data)) {
		const char *text = json_string_value(data);
		size_t len = json_string_length(data);
		json_t *parsed;

		if (len == 0) {
			json_object_del(item, "ConfigurationData");
		} else {
			parsed = json_loadb(text, len, JSON_DECODE_ANY, NULL);
			if (!json_is_object(parsed)) {
				json_decref(parsed);
				return false;
			}
			json_object_set_new(item, "ConfigurationData", parsed);
		}
	} else if (data && json_is_null(data)) {
		json_object_del(item, "ConfigurationData");
	} else if (data && !json_is_object(data)) {
		return false;
	}
	/* ADOT reads Location and the rest from the item itself; a server
	 * that puts them only inside ConfigurationData is read too. */
	data = json_object_get(item, "ConfigurationData");
	if (json_is_object(data) && !json_object_get(item, "Location"))
		json_object_update_missing(item, data);
	filters = json_object_get(item, "AttributeFilters");
	if (filters && json_is_null(filters))
		json_object_set_new(item, "AttributeFilters", json_array());
	return true;
}

static int parse_page(const char *body, size_t len, struct list_page *pg,
		      char *err, size_t err_len)
{
	json_t *root, *v, *list;
	json_error_t jerr;
	size_t i;

	memset(pg, 0, sizeof(*pg));
	root = json_loadb(body, len, JSON_DECODE_ANY, &jerr);
	if (!root) {
		set_err(err, err_len, "invalid JSON at line %d column %d: %s",
			jerr.line, jerr.column, jerr.text);
		return -EINVAL;
	}
	if (!json_is_object(root)) {
		set_err(err, err_len, "expected an object, got %s",
			json_kind(root));
		goto bad;
	}

	pg->changed = true;	/* absent: ADOT treats the list as changed */
	v = field(root, "Changed", NULL);
	if (v) {
		if (!json_is_boolean(v)) {
			set_err(err, err_len, "Changed: expected a boolean, got %s",
				json_kind(v));
			goto bad;
		}
		pg->changed = json_is_true(v);
	}

	v = field(root, "SyncInterval", "NextSyncInterval");
	if (v) {
		double s;

		if (!json_is_number(v)) {
			set_err(err, err_len,
				"SyncInterval: expected a number, got %s",
				json_kind(v));
			goto bad;
		}
		s = json_number_value(v);
		if (s >= 1)
			pg->sync_interval_s = s > SYNC_INTERVAL_MAX_S ?
				SYNC_INTERVAL_MAX_S : (unsigned int)s;
	}

	v = field(root, "SyncedAt", "LastSyncTime");
	if (v) {
		if (!json_is_number(v) && !json_is_string(v)) {
			set_err(err, err_len,
				"SyncedAt: expected a number or string, got %s",
				json_kind(v));
			goto bad;
		}
		pg->synced_at = json_incref(v);
	}

	v = field(root, "NextToken", NULL);
	if (v) {
		if (!json_is_string(v)) {
			set_err(err, err_len,
				"NextToken: expected a string, got %s",
				json_kind(v));
			goto bad;
		}
		if (json_string_length(v) &&
		    !(pg->next_token = strdup(json_string_value(v))))
			goto nomem;
	}

	pg->configs = json_array();
	if (!pg->configs)
		goto nomem;
	list = field(root, "LatestConfigurations", NULL);
	if (list && !json_is_array(list)) {
		set_err(err, err_len,
			"LatestConfigurations: expected an array, got %s",
			json_kind(list));
		goto bad;
	}
	json_array_foreach(list, i, v) {
		if (!normalize_config(v)) {
			pg->skipped++;
			continue;
		}
		if (json_array_append(pg->configs, v))
			goto nomem;
	}
	json_decref(root);
	return 0;

nomem:
	set_err(err, err_len, "out of memory");
	json_decref(root);
	json_decref(pg->configs);
	json_decref(pg->synced_at);
	free(pg->next_token);
	memset(pg, 0, sizeof(*pg));
	return -ENOMEM;
bad:
	json_decref(root);
	json_decref(pg->configs);
	json_decref(pg->synced_at);
	free(pg->next_token);
	memset(pg, 0, sizeof(*pg));
	return -EINVAL;
}

int di_parse_list_response(const char *body, size_t len, json_t **configs,
			   bool *changed, char **next_token,
			   unsigned int *sync_interval_s, unsigned int *skipped,
			   char *err, size_t err_len)
{
	struct list_page pg;
	int ret;

	*configs = NULL;
	*next_token = NULL;
	*changed = false;
	*sync_interval_s = 0;
	*skipped = 0;
	ret = parse_page(body, len, &pg, err, err_len);
	if (ret)
		return ret;
	json_decref(pg.synced_at);
	*configs = pg.configs;
	*changed = pg.changed;
	*next_token = pg.next_token;
	*sync_interval_s = pg.sync_interval_s;
	*skipped = pg.skipped;
	return 0;
}

/* ---- small helpers ----------------------------------------------------- */

static void wake(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is already non-zero, the reader wakes */
	}
}

static void drain(int fd)
{
	uint64_t n;

	if (read(fd, &n, sizeof(n)) < 0) {
		/* EAGAIN: nothing to drain */
	}
}

static uint64_t rng_next(struct di_api *api)
{
	/* xorshift64*: jitter needs spread, not secrecy */
	api->rng ^= api->rng >> 12;
	api->rng ^= api->rng << 25;
	api->rng ^= api->rng >> 27;
	return api->rng * 0x2545F4914F6CDD1Dull;
}

static uint64_t jittered_ms(struct di_api *api, unsigned int seconds)
{
	uint64_t ms = (uint64_t)seconds * 1000;

	return ms + rng_next(api) % (ms * JITTER_PERCENT / 100 + 1);
}

/* Never longer than 10x the interval: a 1 s interval retries within 10 s. */
static unsigned int poll_backoff(unsigned int failures, unsigned int interval_s)
{
	size_t n = sizeof(poll_backoff_s) / sizeof(poll_backoff_s[0]);
	unsigned int step = poll_backoff_s[failures < n ? failures - 1 : n - 1];
	uint64_t cap = (uint64_t)interval_s * 10;

	return step < cap ? step : (unsigned int)cap;
}

static unsigned int report_backoff(unsigned int failures)
{
	size_t n = sizeof(report_backoff_s) / sizeof(report_backoff_s[0]);

	return report_backoff_s[failures < n ? failures - 1 : n - 1];
}

/* One line on stderr, whatever bytes a service name or a server's error
 * text carries. */
__attribute__((format(printf, 1, 2)))
static void log_line(const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	for (char *p = line; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	fprintf(stderr, "pydi agent: DI API %s\n", line);
}

/* Log a failure once per state: a new reason, not a new retry. */
static void log_failure(char **state, const char *key, const char *what,
			const char *detail, const char *then)
{
	if (*state && !strcmp(*state, key))
		return;
	free(*state);
	*state = strdup(key);
	log_line("%s: %s; %s", what, detail, then);
}

static void log_recovery(char **state, const char *what)
{
	if (!*state)
		return;
	free(*state);
	*state = NULL;
	log_line("%s: reachable again", what);
}

static void report_entry_free(struct report_entry *e)
{
	free(e->service);
	free(e->environment);
	free(e->type);
	free(e->location_hash);
	free(e->status);
	free(e->error_cause);
	free(e);
}

static void report_queue_free(struct report_queue *q)
{
	struct report_entry *e;

	while ((e = TAILQ_FIRST(q))) {
		TAILQ_REMOVE(q, e, link);
		report_entry_free(e);
	}
}

/* Drop the oldest entries beyond the bound; lock held. */
static void trim_reports(struct di_api *api)
{
	while (api->nreports > REPORT_QUEUE_MAX) {
		struct report_entry *e = TAILQ_FIRST(&api->reports);

		TAILQ_REMOVE(&api->reports, e, link);
		report_entry_free(e);
		api->nreports--;
		api->counters.reports_dropped++;
		if (!api->overflow_logged) {
			api->overflow_logged = true;
			log_line("%s: queue full (%d entries); dropping the oldest",
				 REPORT_PATH, REPORT_QUEUE_MAX);
		}
	}
}

/* ---- transfers ------------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	struct resp_buf *b = &x->resp;
	size_t len = size * nmemb, max = x->api->max_response_bytes;

	if (len > max - b->len) {
		x->too_big = true;
		return 0;	/* aborts the transfer: memory stays bounded */
	}
	if (b->len + len > b->cap) {
		size_t cap = b->cap ? b->cap : 16384;
		char *p;

		while (cap < b->len + len)
			cap *= 2;
		if (cap > max)
			cap = max;
		p = realloc(b->data, cap);
		if (!p)
			return 0;
		b->data = p;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return len;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow,
		       curl_off_t ultotal, curl_off_t ulnow)
{
	struct xfer *x = arg;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return __atomic_load_n(&x->api->stopping, __ATOMIC_RELAXED);
}

static void xfer_free(struct xfer *x)
{
	if (!x)
		return;
	if (x->easy) {
		curl_multi_remove_handle(x->api->multi, x->easy);
		curl_easy_cleanup(x->easy);
	}
	curl_slist_free_all(x->headers);
	free(x->body);
	free(x->resp.data);
	report_queue_free(&x->batch);
	free(x);
}

/* A POST of body (taken over) to path; 0 or -errno. */
static int xfer_start(struct di_api *api, struct xfer *x, const char *path,
		      char *body)
{
	char url[4096];
	struct curl_slist *h;
	long connect_ms;

	x->api = api;
	x->body = body;
	if (snprintf(url, sizeof(url), "%s%s", api->base_url, path) >=
	    (int)sizeof(url))
		return -ENAMETOOLONG;
	x->easy = curl_easy_init();
	if (!x->easy)
		return -ENOMEM;
	/* no "Expect: 100-continue": it costs a second per big report */
	h = curl_slist_append(NULL, "Content-Type: application/json");
	if (h)
		x->headers = h;
	h = h ? curl_slist_append(h, "Expect:") : NULL;
	if (!h)
		return -ENOMEM;
	connect_ms = api->timeout_ms < CONNECT_TIMEOUT_MAX_MS ?
		api->timeout_ms : CONNECT_TIMEOUT_MAX_MS;

	curl_easy_setopt(x->easy, CURLOPT_URL, url);
	curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
	curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "pydi-agent");
	curl_easy_setopt(x->easy, CURLOPT_POSTFIELDS, x->body);
	curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE,
			 (curl_off_t)strlen(x->body));
	curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, (long)api->timeout_ms);
	curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
	curl_easy_setopt(x->easy, CURLOPT_MAXFILESIZE_LARGE,
			 (curl_off_t)api->max_response_bytes);
	curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(x->easy, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(x->easy, CURLOPT_XFERINFODATA, x);
	curl_easy_setopt(x->easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x);
	if (curl_multi_add_handle(api->multi, x->easy) != CURLM_OK) {
		curl_easy_cleanup(x->easy);
		x->easy = NULL;
		return -ENOMEM;
	}
	return 0;
}

static const char *xfer_failure(struct xfer *x, CURLcode code, long http,
				char *detail, size_t detail_len)
{
	if (x->too_big || code == CURLE_FILESIZE_EXCEEDED) {
		snprintf(detail, detail_len, "response larger than %zu bytes",
			 x->api->max_response_bytes);
		return "too big";
	}
	if (code != CURLE_OK) {
		snprintf(detail, detail_len, "%s", curl_easy_strerror(code));
		return curl_easy_strerror(code);
	}
	snprintf(detail, detail_len, "HTTP %ld", http);
	return detail;
}

/* ---- list polls ----------------------------------------------------------- */

static void poll_reset_pages(struct poll_state *ps)
{
	json_decref(ps->acc);
	json_decref(ps->acc_synced_at);
	free(ps->next_token);
	ps->acc = ps->acc_synced_at = NULL;
	ps->next_token = NULL;
	ps->acc_pages = 0;
	ps->acc_sync_interval_s = 0;
}

static void poll_state_free(struct poll_state *ps)
{
	xfer_free(ps->inflight);
	poll_reset_pages(ps);
	json_decref(ps->synced_at);
	json_decref(ps->delivered);
	free(ps->fail_state);
}

static void watch_free(struct di_api *api, struct watch *w)
{
	for (int t = 0; t < T_COUNT; t++) {
		if (w->ps[t].inflight)
			api->polls_inflight--;
		poll_state_free(&w->ps[t]);
	}
	free(w->service);
	free(w->environment);
	free(w);
}

static void poll_what(const struct watch *w, const struct poll_state *ps,
		      char *what, size_t len)
{
	snprintf(what, len, "%s (%s/%s %s)", LIST_PATH, w->service,
		 w->environment, type_names[ps->type]);
}

/* A failed page fails the whole list: keep the previous one, back off. */
static void poll_failed(struct di_api *api, struct watch *w,
			struct poll_state *ps, const char *key,
			const char *detail)
{
	char what[512], then[64];
	unsigned int delay_s;

	api->counters.poll_errors++;
	poll_reset_pages(ps);
	ps->failures++;
	delay_s = poll_backoff(ps->failures, ps->interval_s);
	ps->due_ms = monotonic_ms() + jittered_ms(api, delay_s);
	poll_what(w, ps, what, sizeof(what));
	snprintf(then, sizeof(then), "retrying in %u s", delay_s);
	log_failure(&ps->fail_state, key, what, detail, then);
}

/* Hand out a complete list unless it is the one handed out last. */
static void deliver(struct di_api *api, struct watch *w, struct poll_state *ps,
		    json_t *list)
{
	struct di_update *u, **tail;
	json_t *copy;

	if (ps->delivered && json_equal(ps->delivered, list)) {
		json_decref(list);
		return;
	}
	/* the caller gets its own copy: jansson refcounts are not shared
	 * across threads */
	copy = json_deep_copy(list);
	if (!copy) {
		json_decref(list);
		return;	/* not recorded as delivered: retried next poll */
	}
	json_decref(ps->delivered);
	ps->delivered = list;

	/* a newer list for the same key replaces one still waiting */
	for (tail = &api->updates; (u = *tail); tail = &u->next) {
		if (!strcmp(u->service, w->service) &&
		    !strcmp(u->environment, w->environment) &&
		    !strcmp(u->type, type_names[ps->type])) {
			json_decref(u->configs);
			u->configs = copy;
			wake(api->updates_fd);
			return;
		}
	}
	u = calloc(1, sizeof(*u));
	if (u) {
		u->service = strdup(w->service);
		u->environment = strdup(w->environment);
		u->type = strdup(type_names[ps->type]);
	}
	if (!u || !u->service || !u->environment || !u->type) {
		if (u) {
			u->configs = copy;
			di_update_free(u);
		} else {
			json_decref(copy);
		}
		json_decref(ps->delivered);
		ps->delivered = NULL;
		return;
	}
	u->configs = copy;
	*tail = u;
	wake(api->updates_fd);
}

static void poll_succeeded(struct di_api *api, struct watch *w,
			   struct poll_state *ps, json_t *list, json_t *synced_at,
			   unsigned int sync_interval_s)
{
	char what[512];

	if (synced_at) {
		json_decref(ps->synced_at);
		ps->synced_at = json_incref(synced_at);
	}
	if (sync_interval_s)
		ps->interval_s = sync_interval_s;
	if (list)
		deliver(api, w, ps, list);
	poll_reset_pages(ps);
	ps->failures = 0;
	ps->due_ms = monotonic_ms() + jittered_ms(api, ps->interval_s);
	poll_what(w, ps, what, sizeof(what));
	log_recovery(&ps->fail_state, what);
}

/* Thread only; lock held. */
static void poll_start(struct di_api *api, struct watch *w,
		       struct poll_state *ps)
{
	json_t *req, *synced_at;
	struct xfer *x;
	char *body = NULL;
	int err;

	req = json_pack("{s:s, s:s, s:s}", "Service", w->service,
			"Environment", w->environment,
			"InstrumentationType", type_names[ps->type]);
	if (!req) {
		poll_failed(api, w, ps, "request",
			    "service or environment is not UTF-8");
		return;
	}
	/* later pages carry the first page's SyncedAt, as ADOT's do */
	synced_at = ps->acc && ps->acc_synced_at ? ps->acc_synced_at :
		ps->synced_at;
	if (synced_at)
		json_object_set(req, "SyncedAt", synced_at);
	if (ps->acc && ps->next_token)
		json_object_set_new(req, "NextToken",
				    json_string(ps->next_token));
	body = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	x = calloc(1, sizeof(*x));
	if (!x || !body) {
		free(body);
		free(x);
		poll_failed(api, w, ps, "request", "out of memory");
		return;
	}
	TAILQ_INIT(&x->batch);
	x->watch = w;
	x->poll = ps;
	err = xfer_start(api, x, LIST_PATH, body);
	if (err) {
		xfer_free(x);
		poll_failed(api, w, ps, "request", strerror(-err));
		return;
	}
	ps->inflight = x;
	api->polls_inflight++;
	api->counters.polls++;
}

/* Thread only. */
static void poll_done(struct di_api *api, struct xfer *x, CURLcode code,
		      long http)
{
	struct poll_state *ps = x->poll;
	struct watch *w = x->watch;
	struct list_page pg = { 0 };
	char detail[256], perr[200];
	const char *key = NULL;
	int parsed = -1;

	/* parse outside the lock: the response may be megabytes */
	if (code == CURLE_OK && !x->too_big && http == 200) {
		parsed = parse_page(x->resp.data ? x->resp.data : "",
				    x->resp.len, &pg, perr, sizeof(perr));
		if (parsed) {
			snprintf(detail, sizeof(detail), "invalid response: %s",
				 perr);
			key = "invalid response";
		}
	} else if (!(code == CURLE_OK && !x->too_big && http == 404)) {
		key = xfer_failure(x, code, http, detail, sizeof(detail));
	}

	pthread_mutex_lock(&api->lock);
	ps->inflight = NULL;
	api->polls_inflight--;
	if (w->removed)
		goto out;
	if (key) {
		poll_failed(api, w, ps, key, detail);
	} else if (parsed) {
		/* 404: the service has no configurations */
		if (ps->acc) {
			poll_failed(api, w, ps, "HTTP 404",
				    "HTTP 404 in the middle of a list");
		} else {
			json_decref(ps->synced_at);
			ps->synced_at = NULL;
			poll_succeeded(api, w, ps, json_array(), NULL, 0);
		}
	} else if (!ps->acc && !pg.changed) {
		poll_succeeded(api, w, ps, NULL, pg.synced_at,
			       pg.sync_interval_s);
	} else {
		if (!ps->acc) {
			ps->acc = json_array();
			ps->acc_synced_at = json_incref(pg.synced_at);
			ps->acc_sync_interval_s = pg.sync_interval_s;
		}
		ps->acc_pages++;
		free(ps->next_token);
		ps->next_token = pg.next_token;
		pg.next_token = NULL;
		if (!ps->acc || json_array_extend(ps->acc, pg.configs)) {
			poll_failed(api, w, ps, "memory", "out of memory");
		} else if (!ps->next_token) {
			json_t *list = json_incref(ps->acc);

			poll_succeeded(api, w, ps, list, ps->acc_synced_at,
				       ps->acc_sync_interval_s);
		} else if (ps->acc_pages >= MAX_PAGES) {
			snprintf(detail, sizeof(detail),
				 "more than %d pages", MAX_PAGES);
			poll_failed(api, w, ps, "too many pages", detail);
		} else {
			ps->due_ms = 0;	/* the next page, now */
		}
	}
out:
	pthread_mutex_unlock(&api->lock);
	json_decref(pg.configs);
	json_decref(pg.synced_at);
	free(pg.next_token);
	xfer_free(x);
}

/* ---- status reports --------------------------------------------------------- */

static json_t *report_json(const struct report_entry *e)
{
	json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:I}",
			      "InstrumentationType", e->type,
			      "SignalType", "SNAPSHOT",
			      "LocationHash", e->location_hash,
			      "Status", e->status,
			      "Time", (json_int_t)e->time_s);

	if (o && e->error_cause &&
	    json_object_set_new(o, "ErrorCause",
				json_string(e->error_cause))) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* Thread only; lock held. Up to 100 entries of the oldest entry's
 * (service, environment), in queue order. */
static void report_start(struct di_api *api)
{
	struct report_entry *first = TAILQ_FIRST(&api->reports), *e, *next;
	json_t *req, *list;
	struct xfer *x;
	char *body;
	int err;

	x = calloc(1, sizeof(*x));
	list = json_array();
	req = json_pack("{s:s, s:s}", "Service", first->service,
			"Environment", first->environment);
	if (!x || !list || !req) {
		/* not UTF-8 (or no memory): this entry can never be sent */
		free(x);
		json_decref(list);
		json_decref(req);
		TAILQ_REMOVE(&api->reports, first, link);
		api->nreports--;
		report_entry_free(first);
		api->counters.reports_dropped++;
		return;
	}
	TAILQ_INIT(&x->batch);
	for (e = first; e && x->batch_len < REPORT_BATCH_MAX; e = next) {
		json_t *o;

		next = TAILQ_NEXT(e, link);
		if (e != first && (strcmp(e->service, first->service) ||
				   strcmp(e->environment, first->environment)))
			continue;
		TAILQ_REMOVE(&api->reports, e, link);
		api->nreports--;
		o = report_json(e);
		if (!o || json_array_append_new(list, o)) {
			report_entry_free(e);
			api->counters.reports_dropped++;
			continue;
		}
		TAILQ_INSERT_TAIL(&x->batch, e, link);
		x->batch_len++;
	}
	json_object_set_new(req, "Configurations", list);
	body = x->batch_len ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!body) {
		api->counters.reports_dropped += x->batch_len;
		xfer_free(x);
		return;
	}
	err = xfer_start(api, x, REPORT_PATH, body);
	if (err) {
		char detail[128];

		api->counters.report_errors++;
		api->counters.reports_dropped += x->batch_len;
		snprintf(detail, sizeof(detail), "%s; dropped %u entries",
			 strerror(-err), x->batch_len);
		log_failure(&api->report_fail_state, "request", REPORT_PATH,
			    detail, "continuing");
		xfer_free(x);
		return;
	}
	api->report_inflight = x;
}

/* Thread only. */
static void report_done(struct di_api *api, struct xfer *x, CURLcode code,
			long http)
{
	char detail[256], then[64];
	const char *key;
	bool ok = code == CURLE_OK && !x->too_big && http >= 200 && http < 300;
	/* the API refused the batch: sending it again cannot help */
	bool refused = code == CURLE_OK && !x->too_big && http >= 400 &&
		http < 500 && http != 408 && http != 429;

	pthread_mutex_lock(&api->lock);
	api->report_inflight = NULL;
	if (ok) {
		api->counters.reports_sent += x->batch_len;
		api->report_failures = 0;
		log_recovery(&api->report_fail_state, REPORT_PATH);
	} else if (refused) {
		api->counters.report_errors++;
		api->counters.reports_dropped += x->batch_len;
		key = xfer_failure(x, code, http, detail, sizeof(detail));
		snprintf(then, sizeof(then), "dropped %u entries",
			 x->batch_len);
		log_failure(&api->report_fail_state, key, REPORT_PATH, detail,
			    then);
	} else {
		struct report_entry *e;
		unsigned int delay_s;

		api->counters.report_errors++;
		api->report_failures++;
		delay_s = report_backoff(api->report_failures);
		api->report_due_ms = monotonic_ms() + jittered_ms(api, delay_s);
		/* back to the front, in order */
		while ((e = TAILQ_LAST(&x->batch, report_queue))) {
			TAILQ_REMOVE(&x->batch, e, link);
			TAILQ_INSERT_HEAD(&api->reports, e, link);
			api->nreports++;
		}
		trim_reports(api);
		key = xfer_failure(x, code, http, detail, sizeof(detail));
		snprintf(then, sizeof(then), "retrying in %u s", delay_s);
		log_failure(&api->report_fail_state, key, REPORT_PATH, detail,
			    then);
	}
	pthread_mutex_unlock(&api->lock);
	xfer_free(x);
}

/* ---- the thread --------------------------------------------------------- */

/* Free watches the caller dropped; lock held. */
static void reap_watches(struct di_api *api)
{
	struct watch **pw = &api->watches, *w;

	while ((w = *pw)) {
		if (w->removed) {
			*pw = w->next;
			watch_free(api, w);
		} else {
			pw = &w->next;
		}
	}
}

/* Start what is due; the milliseconds until something else is. Lock held. */
static long schedule(struct di_api *api, uint64_t now)
{
	uint64_t next = now + IDLE_WAKE_MS;

	for (struct watch *w = api->watches; w; w = w->next) {
		for (int t = 0; t < T_COUNT; t++) {
			struct poll_state *ps = &w->ps[t];

			if (ps->inflight)
				continue;
			if (ps->due_ms <= now) {
				/* full: a finishing transfer wakes the loop */
				if (api->polls_inflight >= MAX_POLLS_INFLIGHT)
					continue;
				poll_start(api, w, ps);
			}
			/* a failed start rescheduled it */
			if (!ps->inflight && ps->due_ms < next)
				next = ps->due_ms > now ? ps->due_ms : now;
		}
	}
	while (!api->report_inflight && !TAILQ_EMPTY(&api->reports)) {
		uint64_t due = TAILQ_FIRST(&api->reports)->queued_ms +
			REPORT_COALESCE_MS;

		if (due < api->report_due_ms)
			due = api->report_due_ms;
		if (due > now) {
			if (due < next)
				next = due;
			break;
		}
		report_start(api);
	}
	if (TAILQ_EMPTY(&api->reports))
		api->overflow_logged = false;
	return (long)(next - now);
}

/* Finish completed transfers; true if any did. */
static bool collect(struct di_api *api)
{
	CURLMsg *msg;
	int left;
	bool any = false;

	while ((msg = curl_multi_info_read(api->multi, &left))) {
		struct xfer *x;
		char *priv = NULL;
		long http = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
		x = (struct xfer *)priv;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE,
				  &http);
		if (x->poll)
			poll_done(api, x, msg->data.result, http);
		else
			report_done(api, x, msg->data.result, http);
		any = true;
	}
	return any;
}

static void *api_thread(void *arg)
{
	struct di_api *api = arg;
	struct curl_waitfd wfd = { .fd = api->wake_fd, .events = CURL_WAIT_POLLIN };

	for (;;) {
		long wait_ms;
		int running;

		pthread_mutex_lock(&api->lock);
		if (api->stopping) {
			pthread_mutex_unlock(&api->lock);
			break;
		}
		reap_watches(api);
		wait_ms = schedule(api, monotonic_ms());
		pthread_mutex_unlock(&api->lock);

		curl_multi_perform(api->multi, &running);
		if (collect(api))
			continue;	/* a next page may be due now */
		if (wait_ms > 0)
			curl_multi_poll(api->multi, &wfd, 1, (int)wait_ms, NULL);
		drain(api->wake_fd);
	}
	return NULL;
}

/* ---- the API ---------------------------------------------------------------- */

int di_api_start(struct di_api **out, const struct di_api_opts *o, char *err,
		 size_t err_len)
{
	struct di_api *api;
	sigset_t all, old;
	size_t len;
	int ret;

	*out = NULL;
	if (!o || !o->base_url ||
	    (strncmp(o->base_url, "http://", 7) &&
	     strncmp(o->base_url, "https://", 8))) {
		set_err(err, err_len, "DI API URL %s: expected http:// or https://",
			o && o->base_url ? o->base_url : "(none)");
		return -EINVAL;
	}
	api = calloc(1, sizeof(*api));
	if (!api) {
		set_err(err, err_len, "DI API client: out of memory");
		return -ENOMEM;
	}
	api->wake_fd = api->updates_fd = -1;
	pthread_mutex_init(&api->lock, NULL);
	TAILQ_INIT(&api->reports);
	api->base_url = strdup(o->base_url);
	if (!api->base_url) {
		ret = -ENOMEM;
		set_err(err, err_len, "DI API client: out of memory");
		goto fail;
	}
	len = strlen(api->base_url);
	while (len && api->base_url[len - 1] == '/')
		api->base_url[--len] = '\0';
	api->poll_s[T_BREAKPOINT] = o->breakpoint_poll_s ?
		o->breakpoint_poll_s : default_poll_s[T_BREAKPOINT];
	api->poll_s[T_PROBE] = o->probe_poll_s ?
		o->probe_poll_s : default_poll_s[T_PROBE];
	api->timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
	api->max_response_bytes = o->max_response_bytes ?
		o->max_response_bytes : DEFAULT_MAX_RESPONSE;
	api->rng = monotonic_ns() ^ ((uint64_t)getpid() << 32) ^
		(uint64_t)(uintptr_t)api;
	if (!api->rng)
		api->rng = 1;

	api->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	api->updates_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (api->wake_fd < 0 || api->updates_fd < 0) {
		ret = -errno;
		set_err(err, err_len, "DI API client: eventfd: %s",
			strerror(errno));
		goto fail;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT)) {
		ret = -ENOMEM;
		set_err(err, err_len, "DI API client: curl_global_init failed");
		goto fail;
	}
	api->multi = curl_multi_init();
	if (!api->multi) {
		curl_global_cleanup();
		ret = -ENOMEM;
		set_err(err, err_len, "DI API client: curl_multi_init failed");
		goto fail;
	}
	/* Signals are the main loop's (signalfd): a thread that did not block
	 * them would take SIGTERM's default action and skip the revert. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	ret = -pthread_create(&api->thread, NULL, api_thread, api);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		curl_multi_cleanup(api->multi);
		curl_global_cleanup();
		set_err(err, err_len, "DI API client: starting its thread: %s",
			strerror(-ret));
		goto fail;
	}
	api->thread_started = true;
	*out = api;
	return 0;

fail:
	if (api->wake_fd >= 0)
		close(api->wake_fd);
	if (api->updates_fd >= 0)
		close(api->updates_fd);
	free(api->base_url);
	pthread_mutex_destroy(&api->lock);
	free(api);
	return ret;
}

void di_api_stop(struct di_api *api)
{
	struct watch *w;

	if (!api)
		return;
	pthread_mutex_lock(&api->lock);
	__atomic_store_n(&api->stopping, true, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&api->lock);
	wake(api->wake_fd);
	pthread_join(api->thread, NULL);

	/* queued reports are dropped: stopping must not wait on the API */
	while ((w = api->watches)) {
		api->watches = w->next;
		watch_free(api, w);
	}
	xfer_free(api->report_inflight);
	report_queue_free(&api->reports);
	di_update_free(api->updates);
	curl_multi_cleanup(api->multi);
	curl_global_cleanup();
	free(api->report_fail_state);
	free(api->base_url);
	close(api->wake_fd);
	close(api->updates_fd);
	pthread_mutex_destroy(&api->lock);
	free(api);
}

int di_api_fd(const struct di_api *api)
{
	return api->updates_fd;
}

/* Drop the waiting updates of one (service, environment); lock held. */
static void drop_updates(struct di_api *api, const char *service,
			 const char *environment)
{
	struct di_update **pu = &api->updates, *u;

	while ((u = *pu)) {
		if (!strcmp(u->service, service) &&
		    !strcmp(u->environment, environment)) {
			*pu = u->next;
			u->next = NULL;
			di_update_free(u);
		} else {
			pu = &u->next;
		}
	}
}

void di_api_watch(struct di_api *api, const char *service,
		  const char *environment, bool on)
{
	struct watch *w;

	if (!api || !service || !environment)
		return;
	pthread_mutex_lock(&api->lock);
	for (w = api->watches; w; w = w->next)
		if (!w->removed && !strcmp(w->service, service) &&
		    !strcmp(w->environment, environment))
			break;
	if (w && !on) {
		/* Nothing more arrives for it, not even what its last polls
		 * queued before the caller let go of it. */
		w->removed = true;
		drop_updates(api, service, environment);
	} else if (!w && on) {
		w = calloc(1, sizeof(*w));
		if (w) {
			w->service = strdup(service);
			w->environment = strdup(environment);
		}
		if (!w || !w->service || !w->environment) {
			if (w) {
				free(w->service);
				free(w->environment);
				free(w);
			}
			log_line("watching %s/%s: out of memory", service,
				 environment);
			pthread_mutex_unlock(&api->lock);
			return;
		}
		for (int t = 0; t < T_COUNT; t++) {
			w->ps[t].type = t;
			w->ps[t].interval_s = api->poll_s[t];
			w->ps[t].due_ms = 0;	/* the first poll, now */
		}
		w->next = api->watches;
		api->watches = w;
	} else {
		w = NULL;
	}
	pthread_mutex_unlock(&api->lock);
	if (w)
		wake(api->wake_fd);
}

struct di_update *di_api_take_updates(struct di_api *api)
{
	struct di_update *u;

	pthread_mutex_lock(&api->lock);
	u = api->updates;
	api->updates = NULL;
	drain(api->updates_fd);
	pthread_mutex_unlock(&api->lock);
	return u;
}

void di_update_free(struct di_update *u)
{
	while (u) {
		struct di_update *next = u->next;

		free(u->service);
		free(u->environment);
		free(u->type);
		json_decref(u->configs);
		free(u);
		u = next;
	}
}

void di_api_report(struct di_api *api, const char *service,
		   const char *environment, const char *type,
		   const char *location_hash, const char *status,
		   const char *error_cause, int64_t time_ms)
{
	struct report_entry *e;

	if (!api || !service || !environment || !type || !location_hash ||
	    !status)
		return;
	e = calloc(1, sizeof(*e));
	if (!e)
		goto nomem;
	e->service = strdup(service);
	e->environment = strdup(environment);
	e->type = strdup(type);
	e->location_hash = strdup(location_hash);
	e->status = strdup(status);
	e->error_cause = error_cause && *error_cause ? strdup(error_cause) : NULL;
	if (!e->service || !e->environment || !e->type || !e->location_hash ||
	    !e->status || (error_cause && *error_cause && !e->error_cause)) {
		report_entry_free(e);
		goto nomem;
	}
	/* ADOT's Time: whole seconds since the epoch */
	e->time_s = time_ms > 0 ? time_ms / 1000 : (int64_t)time(NULL);
	e->queued_ms = monotonic_ms();

	pthread_mutex_lock(&api->lock);
	TAILQ_INSERT_TAIL(&api->reports, e, link);
	api->nreports++;
	trim_reports(api);
	pthread_mutex_unlock(&api->lock);
	wake(api->wake_fd);
	return;

nomem:
	pthread_mutex_lock(&api->lock);
	api->counters.reports_dropped++;
	pthread_mutex_unlock(&api->lock);
}

void di_api_get_counters(struct di_api *api, struct di_api_counters *c)
{
	pthread_mutex_lock(&api->lock);
	*c = api->counters;
	pthread_mutex_unlock(&api->lock);
}
