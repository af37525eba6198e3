// SPDX-License-Identifier: MIT
/*
 * The DI API client against a misbehaving mock API (di_api_mock_server.py,
 * run by /usr/bin/python3 in a child). One client with 1 s intervals
 * watches a service per scenario, all at once, for ~11 s; the tests then
 * read what the client handed out and what the server saw.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <curl/curl.h>

#include "clock.h"
#include "di_api.h"

#define ENV "env-1"
#define REPORT_TIME_MS 1700000000123ll
#define COLLECT_MIN_MS 4000
#define COLLECT_MAX_MS 16000
#define MAX_RESPONSE (64 * 1024)

static const char *const services[] = {
	"basic", "paged", "missing", "flaky500", "slow", "close", "garbage",
	"huge-len", "huge-chunked", "sync",
};

static const struct expected {
	const char *service;
	const char *type;
	const char *hashes;	/* LocationHashes, comma-separated */
} expected[] = {
	{ "basic", "BREAKPOINT", "breakpoint-1" },
	{ "basic", "PROBE", "probe-1" },
	{ "paged", "BREAKPOINT", "a,b,c" },
	{ "paged", "PROBE", "" },
	{ "missing", "BREAKPOINT", "" },
	{ "missing", "PROBE", "" },
	{ "flaky500", "BREAKPOINT", "flaky500-BREAKPOINT" },
	{ "flaky500", "PROBE", "flaky500-PROBE" },
	{ "slow", "BREAKPOINT", "slow-BREAKPOINT" },
	{ "slow", "PROBE", "slow-PROBE" },
	{ "close", "BREAKPOINT", "close-BREAKPOINT" },
	{ "close", "PROBE", "close-PROBE" },
	{ "garbage", "BREAKPOINT", "garbage-BREAKPOINT" },
	{ "garbage", "PROBE", "garbage-PROBE" },
	{ "sync", "BREAKPOINT", "s" },
	{ "sync", "PROBE", "s" },
};
#define N_EXPECTED (sizeof(expected) / sizeof(expected[0]))

struct got {
	char service[32];
	char type[16];
	char hashes[256];
	json_t *configs;
	int count;
};

static pid_t server_pid = -1;
static char base_url[64];
static struct got got[64];
static int ngot;
static json_t *server_log;	/* the server's "requests" array */
static struct di_api_counters counters;
static double reports_queued_s;
static char *client_log;	/* what the client wrote to stderr */
static long hwm_growth_kb;

/* ---- plumbing ------------------------------------------------------------ */

static int start_server(void)
{
	char script[4096], line[32] = "";
	const char *src = getenv("PYDI_SOURCE");
	struct pollfd pfd;
	int pipefd[2];
	ssize_t n;

	if (src && *src) {
		snprintf(script, sizeof(script),
			 "%s/tests/unit/di_api_mock_server.py", src);
	} else {
		const char *slash = strrchr(__FILE__, '/');

		snprintf(script, sizeof(script), "%.*sdi_api_mock_server.py",
			 slash ? (int)(slash - __FILE__ + 1) : 0, __FILE__);
	}
	if (pipe2(pipefd, O_CLOEXEC))
		return -errno;
	server_pid = fork();
	if (server_pid < 0)
		return -errno;
	if (server_pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(pipefd[1], STDOUT_FILENO);
		execl("/usr/bin/python3", "/usr/bin/python3", script, (char *)NULL);
		_exit(127);
	}
	close(pipefd[1]);
	/* the port and a newline, which may come in pieces */
	pfd = (struct pollfd){ .fd = pipefd[0], .events = POLLIN };
	for (size_t got_len = 0; !memchr(line, '\n', got_len);) {
		if (poll(&pfd, 1, 10000) != 1 ||
		    (n = read(pipefd[0], line + got_len,
			      sizeof(line) - 1 - got_len)) <= 0 ||
		    (got_len += (size_t)n) == sizeof(line) - 1) {
			close(pipefd[0]);
			return -EIO;
		}
	}
	close(pipefd[0]);
	snprintf(base_url, sizeof(base_url), "http://127.0.0.1:%d/",
		 atoi(line));	/* the trailing slash must not matter */
	return 0;
}

static void stop_server(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGKILL);
		waitpid(server_pid, NULL, 0);
		server_pid = -1;
	}
}

static size_t to_string(char *data, size_t size, size_t n, void *arg)
{
	char **s = arg;
	size_t old = *s ? strlen(*s) : 0;
	char *p = realloc(*s, old + size * n + 1);

	if (!p)
		return 0;
	memcpy(p + old, data, size * n);
	p[old + size * n] = '\0';
	*s = p;
	return size * n;
}

static json_t *fetch_server_log(void)
{
	char url[96], *text = NULL;
	json_t *root, *requests;
	CURL *c = curl_easy_init();

	snprintf(url, sizeof(url), "%s_log", base_url);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_string);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &text);
	curl_easy_perform(c);
	curl_easy_cleanup(c);
	root = text ? json_loads(text, 0, NULL) : NULL;
	free(text);
	requests = json_incref(json_object_get(root, "requests"));
	json_decref(root);
	return requests;
}

static long peak_rss_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/status", "r");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return kb;
}

static struct got *find_got(const char *service, const char *type)
{
	for (int i = 0; i < ngot; i++)
		if (!strcmp(got[i].service, service) &&
		    !strcmp(got[i].type, type))
			return &got[i];
	return NULL;
}

static void record(struct di_update *u)
{
	struct got *g = find_got(u->service, u->type);
	size_t i;
	json_t *c;

	if (!g) {
		if (ngot == (int)(sizeof(got) / sizeof(got[0])))
			return;
		g = &got[ngot++];
		snprintf(g->service, sizeof(g->service), "%s", u->service);
		snprintf(g->type, sizeof(g->type), "%s", u->type);
	}
	g->count++;
	g->hashes[0] = '\0';
	json_array_foreach(u->configs, i, c) {
		size_t len = strlen(g->hashes);

		snprintf(g->hashes + len, sizeof(g->hashes) - len, "%s%s",
			 i ? "," : "",
			 json_string_value(json_object_get(c, "LocationHash")));
	}
	json_decref(g->configs);
	g->configs = json_incref(u->configs);
}

static bool all_expected_arrived(void)
{
	for (size_t i = 0; i < N_EXPECTED; i++)
		if (!find_got(expected[i].service, expected[i].type))
			return false;
	return true;
}

/* The list requests for (service, type), in arrival order. */
static size_t list_requests(const char *service, const char *type,
			    json_t **out, size_t max)
{
	size_t i, n = 0;
	json_t *r;

	json_array_foreach(server_log, i, r) {
		json_t *body = json_object_get(r, "body");

		if (strcmp(json_string_value(json_object_get(r, "path")),
			   "/list-instrumentation-configurations") ||
		    strcmp(json_string_value(json_object_get(body, "Service")) ?: "", service) ||
		    strcmp(json_string_value(json_object_get(body, "InstrumentationType")) ?: "", type))
			continue;
		if (n < max)
			out[n] = r;
		n++;
	}
	return n < max ? n : max;
}

static double arrival(json_t *r)
{
	return json_number_value(json_object_get(r, "t"));
}

static void queue_reports(struct di_api *api)
{
	char hash[32];

	reports_queued_s = monotonic_ns() / 1e9;
	for (int i = 0; i < 250; i++) {
		snprintf(hash, sizeof(hash), "hash-%d", i);
		if (i % 5 == 4)
			di_api_report(api, "rep", ENV, "BREAKPOINT", hash,
				      "ERROR", "METHOD_NOT_FOUND", REPORT_TIME_MS);
		else
			di_api_report(api, "rep", ENV, "BREAKPOINT", hash,
				      "READY", NULL, REPORT_TIME_MS);
	}
	for (int i = 0; i < 10; i++) {
		snprintf(hash, sizeof(hash), "probe-%d", i);
		di_api_report(api, "rep2", ENV, "PROBE", hash, "ACTIVE", NULL,
			      REPORT_TIME_MS);
	}
	for (int i = 0; i < 5; i++) {
		snprintf(hash, sizeof(hash), "retry-%d", i);
		di_api_report(api, "rep-fail", ENV, "BREAKPOINT", hash,
			      "READY", NULL, REPORT_TIME_MS);
	}
}

/* Everything runs once, here; the tests below only look at the results. */
static int run_scenarios(void **state)
{
	struct di_api_opts opts = {
		.breakpoint_poll_s = 1,
		.probe_poll_s = 1,
		.timeout_ms = 800,
		.max_response_bytes = MAX_RESPONSE,
	};
	struct di_api *api;
	char err[256];
	FILE *log;
	uint64_t start;
	long hwm_before, len;
	int saved_stderr;

	(void)state;
	if (start_server()) {
		fprintf(stderr, "cannot start the mock DI API\n");
		return -1;
	}
	opts.base_url = base_url;
	hwm_before = peak_rss_kb();

	/* the client's log lines, to count them */
	fflush(stderr);
	log = tmpfile();
	saved_stderr = dup(STDERR_FILENO);
	dup2(fileno(log), STDERR_FILENO);

	if (di_api_start(&api, &opts, err, sizeof(err))) {
		dup2(saved_stderr, STDERR_FILENO);
		fprintf(stderr, "di_api_start: %s\n", err);
		return -1;
	}
	for (size_t i = 0; i < sizeof(services) / sizeof(services[0]); i++)
		di_api_watch(api, services[i], ENV, true);
	queue_reports(api);

	start = monotonic_ms();
	while (monotonic_ms() - start < COLLECT_MAX_MS) {
		struct pollfd pfd = { .fd = di_api_fd(api), .events = POLLIN };
		struct di_update *u, *all;

		if (all_expected_arrived() &&
		    monotonic_ms() - start >= COLLECT_MIN_MS)
			break;
		poll(&pfd, 1, 100);
		all = di_api_take_updates(api);
		for (u = all; u; u = u->next)
			record(u);
		di_update_free(all);
	}
	di_api_get_counters(api, &counters);
	server_log = fetch_server_log();
	hwm_growth_kb = peak_rss_kb() - hwm_before;
	di_api_stop(api);

	fflush(stderr);
	dup2(saved_stderr, STDERR_FILENO);
	close(saved_stderr);
	len = ftell(log);
	client_log = calloc(1, len > 0 ? (size_t)len + 1 : 1);
	rewind(log);
	if (len > 0 && fread(client_log, 1, (size_t)len, log) != (size_t)len)
		client_log[0] = '\0';
	fclose(log);
	fprintf(stderr, "--- client log ---\n%s--- %d lists in %.1f s\n",
		client_log, ngot, (monotonic_ms() - start) / 1000.0);
	return server_log ? 0 : -1;
}

static int cleanup(void **state)
{
	(void)state;
	stop_server();
	for (int i = 0; i < ngot; i++)
		json_decref(got[i].configs);
	json_decref(server_log);
	free(client_log);
	return 0;
}

/* ---- the tests ------------------------------------------------------------- */

static void test_every_list_arrives_once(void **state)
{
	(void)state;
	for (size_t i = 0; i < N_EXPECTED; i++) {
		struct got *g = find_got(expected[i].service, expected[i].type);

		if (!g)
			fail_msg("no list for %s %s", expected[i].service,
				 expected[i].type);
		assert_string_equal(g->hashes, expected[i].hashes);
		if (g->count != 1)
			fail_msg("%s %s handed out %d times", g->service,
				 g->type, g->count);
	}
	/* nothing for the huge responses, nothing unexpected */
	assert_int_equal(ngot, N_EXPECTED);
}

static void test_both_types_polled_with_adot_body(void **state)
{
	static const char *const types[] = { "BREAKPOINT", "PROBE" };
	json_t *reqs[32];

	(void)state;
	for (int t = 0; t < 2; t++) {
		size_t n = list_requests("basic", types[t], reqs, 32);
		json_t *want;

		assert_true(n >= 3);
		want = json_pack("{s:s, s:s, s:s}", "Service", "basic",
				 "Environment", ENV, "InstrumentationType",
				 types[t]);
		assert_true(json_equal(json_object_get(reqs[0], "body"), want));
		/* later polls echo the server's SyncedAt */
		json_object_set_new(want, "SyncedAt", json_real(100.5));
		assert_true(json_equal(json_object_get(reqs[1], "body"), want));
		json_decref(want);
	}
}

static void test_configuration_data_string_and_object_arrive_as_objects(void **state)
{
	json_t *bp = find_got("basic", "BREAKPOINT")->configs;
	json_t *probe = find_got("basic", "PROBE")->configs;

	(void)state;
	assert_string_equal(json_string_value(json_object_get(json_object_get(
		json_object_get(json_array_get(bp, 0), "ConfigurationData"),
		"Location"), "MethodName")), "f");
	assert_string_equal(json_string_value(json_object_get(json_object_get(
		json_object_get(json_array_get(probe, 0), "ConfigurationData"),
		"Location"), "MethodName")), "g");
}

static void test_polls_keep_the_interval(void **state)
{
	json_t *reqs[64];
	size_t n = list_requests("basic", "BREAKPOINT", reqs, 64);

	(void)state;
	for (size_t i = 1; i < n; i++) {
		double gap = arrival(reqs[i]) - arrival(reqs[i - 1]);

		if (gap < 0.95 || gap > 1.6)
			fail_msg("poll %zu came %.2f s after the one before", i, gap);
	}
}

static void test_pages_are_assembled_with_next_token(void **state)
{
	json_t *reqs[32], *b;
	size_t n = list_requests("paged", "BREAKPOINT", reqs, 32);

	(void)state;
	assert_true(n >= 4);
	assert_null(json_object_get(json_object_get(reqs[0], "body"), "NextToken"));
	b = json_object_get(reqs[1], "body");
	assert_string_equal(json_string_value(json_object_get(b, "NextToken")), "p2");
	assert_int_equal(json_integer_value(json_object_get(b, "SyncedAt")), 7);
	b = json_object_get(reqs[2], "body");
	assert_string_equal(json_string_value(json_object_get(b, "NextToken")), "p3");
	/* the next poll starts over, with SyncedAt, and gets Changed false */
	b = json_object_get(reqs[3], "body");
	assert_null(json_object_get(b, "NextToken"));
	assert_int_equal(json_integer_value(json_object_get(b, "SyncedAt")), 7);
	assert_true(arrival(reqs[2]) - arrival(reqs[0]) < 0.5);
}

static void test_failures_back_off_then_recover(void **state)
{
	static const char *const failing[] = { "flaky500", "slow", "close", "garbage" };
	json_t *reqs[32];

	(void)state;
	for (size_t i = 0; i < 4; i++) {
		size_t n = list_requests(failing[i], "BREAKPOINT", reqs, 32);
		double gap;

		assert_true(n >= 2);
		/* 10 s: 10x the 1 s interval caps the first step (10 s) */
		gap = arrival(reqs[1]) - arrival(reqs[0]);
		if (gap < 9.9 || gap > 11.5)
			fail_msg("%s: retried after %.2f s", failing[i], gap);
	}
	assert_true(counters.poll_errors >= 4 * 2 + 2 * 2);
}

static void test_sync_interval_replaces_the_interval(void **state)
{
	json_t *reqs[32];
	size_t n = list_requests("sync", "PROBE", reqs, 32);

	(void)state;
	assert_true(n >= 2);
	for (size_t i = 1; i < n; i++) {
		double gap = arrival(reqs[i]) - arrival(reqs[i - 1]);

		if (gap < 2.95 || gap > 3.5)
			fail_msg("sync poll %zu came %.2f s after the one before", i, gap);
	}
}

static void test_huge_responses_are_cut_off(void **state)
{
	static const char *const huge[] = { "huge-len", "huge-chunked" };
	json_t *reqs[8];

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		size_t n = list_requests(huge[i], "BREAKPOINT", reqs, 8);
		json_t *sent;

		assert_true(n >= 1);
		sent = json_object_get(reqs[0], "sent");
		/* the client hung up long before the 200 MB were out (what
		 * got out sat in socket buffers) */
		assert_true(json_is_integer(sent));
		if (json_integer_value(sent) > 32 * 1000 * 1000)
			fail_msg("%s: the server got %lld bytes out", huge[i],
				 (long long)json_integer_value(sent));
	}
	if (hwm_growth_kb > 64 * 1024)
		fail_msg("peak RSS grew by %ld kB", hwm_growth_kb);
}

static void test_reports_are_batched_per_service(void **state)
{
	int delivered_rep = 0, delivered_rep2 = 0, delivered_fail = 0, refused = 0;
	double first = 0;
	size_t i;
	json_t *r;

	(void)state;
	json_array_foreach(server_log, i, r) {
		json_t *body = json_object_get(r, "body"), *list, *e;
		const char *svc;
		size_t j;

		if (strcmp(json_string_value(json_object_get(r, "path")),
			   "/report-instrumentation-configuration-status"))
			continue;
		if (!first)
			first = arrival(r);
		svc = json_string_value(json_object_get(body, "Service"));
		assert_non_null(svc);
		assert_string_equal(json_string_value(json_object_get(body, "Environment")), ENV);
		list = json_object_get(body, "Configurations");
		assert_true(json_array_size(list) >= 1 && json_array_size(list) <= 100);
		json_array_foreach(list, j, e) {
			const char *status = json_string_value(json_object_get(e, "Status"));

			assert_string_equal(json_string_value(json_object_get(e, "SignalType")), "SNAPSHOT");
			assert_true(json_is_integer(json_object_get(e, "Time")));
			assert_int_equal(json_integer_value(json_object_get(e, "Time")), 1700000000);
			assert_non_null(json_string_value(json_object_get(e, "LocationHash")));
			assert_non_null(json_string_value(json_object_get(e, "InstrumentationType")));
			if (!strcmp(status, "ERROR"))
				assert_string_equal(json_string_value(json_object_get(e, "ErrorCause")),
						    "METHOD_NOT_FOUND");
			else
				assert_null(json_object_get(e, "ErrorCause"));
			assert_int_equal(json_object_size(e), strcmp(status, "ERROR") ? 5 : 6);
		}
		if (json_integer_value(json_object_get(r, "answer")) != 200) {
			refused++;
			continue;
		}
		if (!strcmp(svc, "rep")) {
			/* in queue order */
			json_array_foreach(list, j, e) {
				char hash[32];

				snprintf(hash, sizeof(hash), "hash-%d", delivered_rep++);
				assert_string_equal(json_string_value(json_object_get(e, "LocationHash")), hash);
			}
		} else if (!strcmp(svc, "rep2")) {
			delivered_rep2 += json_array_size(list);
		} else if (!strcmp(svc, "rep-fail")) {
			delivered_fail += json_array_size(list);
		}
	}
	assert_int_equal(delivered_rep, 250);
	assert_int_equal(delivered_rep2, 10);
	fprintf(stderr, "first report reached the API %.0f ms after queueing\n",
		(first - reports_queued_s) * 1000);
	assert_true(first - reports_queued_s < 0.5);
	assert_int_equal(refused, 1);
	assert_int_equal(delivered_fail, 5);
	assert_int_equal(counters.reports_sent, 265);
	assert_int_equal(counters.report_errors, 1);
	assert_int_equal(counters.reports_dropped, 0);
}

static int count_lines(const char *needle)
{
	int n = 0;

	for (const char *p = client_log; (p = strstr(p, needle)); p++)
		n++;
	return n;
}

static void test_failures_are_logged_once_per_state(void **state)
{
	(void)state;
	/* one line going bad, one coming back; none per retry */
	assert_int_equal(count_lines("(flaky500/" ENV " BREAKPOINT): HTTP 500"), 1);
	assert_int_equal(count_lines("(flaky500/" ENV " BREAKPOINT): reachable again"), 1);
	assert_int_equal(count_lines("(garbage/" ENV " PROBE): invalid response"), 1);
	assert_int_equal(count_lines("(huge-chunked/" ENV " BREAKPOINT)"), 1);
	assert_int_equal(count_lines("(basic/"), 0);
	assert_int_equal(count_lines("report-instrumentation-configuration-status: HTTP 503"), 1);
}

static void test_stop_is_fast_with_a_request_in_flight(void **state)
{
	struct di_api_opts opts = {
		.base_url = base_url,
		.breakpoint_poll_s = 1,
		.probe_poll_s = 1,
		.timeout_ms = 20000,
		.max_response_bytes = MAX_RESPONSE,
	};
	struct di_api *api;
	uint64_t t0;
	bool in_flight = false;
	char err[256];

	(void)state;
	assert_int_equal(di_api_start(&api, &opts, err, sizeof(err)), 0);
	di_api_watch(api, "hang", ENV, true);
	for (int i = 0; i < 60 && !in_flight; i++) {
		json_t *reqs[4], *log;

		usleep(50000);
		log = fetch_server_log();
		json_decref(server_log);
		server_log = log;
		in_flight = list_requests("hang", "BREAKPOINT", reqs, 4) > 0;
	}
	assert_true(in_flight);
	t0 = monotonic_ms();
	di_api_stop(api);
	fprintf(stderr, "stop took %llu ms\n",
		(unsigned long long)(monotonic_ms() - t0));
	assert_true(monotonic_ms() - t0 < 1000);
}

static size_t requests_since(const char *service, double since)
{
	json_t *reqs[64];
	size_t n = list_requests(service, "BREAKPOINT", reqs, 64), later = 0;

	for (size_t i = 0; i < n; i++)
		later += arrival(reqs[i]) > since;
	return later;
}

static void test_unwatch_stops_polling(void **state)
{
	struct di_api_opts opts = {
		.base_url = base_url,
		.breakpoint_poll_s = 1,
		.probe_poll_s = 1,
		.timeout_ms = 800,
		.max_response_bytes = MAX_RESPONSE,
	};
	struct di_api *api;
	struct di_update *u = NULL;
	char err[256];
	double off;

	(void)state;
	assert_int_equal(di_api_start(&api, &opts, err, sizeof(err)), 0);
	di_api_watch(api, "basic", ENV, true);
	di_api_watch(api, "basic", ENV, true);	/* idempotent */
	for (int i = 0; i < 50 && !u; i++) {
		struct pollfd pfd = { .fd = di_api_fd(api), .events = POLLIN };

		poll(&pfd, 1, 100);
		u = di_api_take_updates(api);
	}
	assert_non_null(u);
	di_update_free(u);
	di_api_watch(api, "basic", ENV, false);
	off = monotonic_ns() / 1e9;
	usleep(2500 * 1000);
	json_decref(server_log);
	server_log = fetch_server_log();
	/* one poll may have been on its way already */
	assert_true(requests_since("basic", off + 0.05) == 0);
	assert_null(di_api_take_updates(api));
	di_api_stop(api);
}

static void test_unwatch_drops_waiting_updates(void **state)
{
	struct di_api_opts opts = {
		.base_url = base_url,
		.breakpoint_poll_s = 1,
		.probe_poll_s = 1,
		.timeout_ms = 800,
		.max_response_bytes = MAX_RESPONSE,
	};
	struct pollfd pfd = { .events = POLLIN };
	struct di_api *api;
	char err[256];

	(void)state;
	assert_int_equal(di_api_start(&api, &opts, err, sizeof(err)), 0);
	di_api_watch(api, "basic", ENV, true);
	pfd.fd = di_api_fd(api);
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	/* Updates wait for the caller; it lets go of the service instead. */
	di_api_watch(api, "basic", ENV, false);
	assert_null(di_api_take_updates(api));
	di_api_stop(api);
}

static void test_report_queue_drops_the_oldest(void **state)
{
	struct di_api_opts opts = {
		.base_url = "http://127.0.0.1:1",	/* refused */
		.timeout_ms = 500,
	};
	struct di_api_counters c;
	struct di_api *api;
	char err[256];

	(void)state;
	assert_int_equal(di_api_start(&api, &opts, err, sizeof(err)), 0);
	for (int i = 0; i < 10050; i++)
		di_api_report(api, "svc", ENV, "BREAKPOINT", "h", "READY", NULL, 0);
	di_api_get_counters(api, &c);
	assert_int_equal(c.reports_dropped, 50);
	assert_int_equal(c.reports_sent, 0);
	di_api_stop(api);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_every_list_arrives_once),
		cmocka_unit_test(test_both_types_polled_with_adot_body),
		cmocka_unit_test(test_configuration_data_string_and_object_arrive_as_objects),
		cmocka_unit_test(test_polls_keep_the_interval),
		cmocka_unit_test(test_pages_are_assembled_with_next_token),
		cmocka_unit_test(test_failures_back_off_then_recover),
		cmocka_unit_test(test_sync_interval_replaces_the_interval),
		cmocka_unit_test(test_huge_responses_are_cut_off),
		cmocka_unit_test(test_reports_are_batched_per_service),
		cmocka_unit_test(test_failures_are_logged_once_per_state),
		cmocka_unit_test(test_stop_is_fast_with_a_request_in_flight),
		cmocka_unit_test(test_unwatch_stops_polling),
		cmocka_unit_test(test_unwatch_drops_waiting_updates),
		cmocka_unit_test(test_report_queue_drops_the_oldest),
	};

	return cmocka_run_group_tests(tests, run_scenarios, cleanup);
}
