/* SPDX-License-Identifier: MIT */
/*
 * The DI API client, wire-compatible with ADOT's debugger: its own thread
 * polls POST {api}/list-instrumentation-configurations for every watched
 * (service, environment) and both instrumentation types, pages with
 * NextToken, honours Changed/SyncInterval, backs off on failure, and sends
 * queued status reports to POST {api}/report-instrumentation-configuration-
 * status in batches of at most 100. Nothing here ever blocks the caller.
 */
#ifndef PYDI_DI_API_H
#define PYDI_DI_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct di_api;

struct di_api_opts {
	const char *base_url;
	unsigned int breakpoint_poll_s;
	unsigned int probe_poll_s;
	unsigned int timeout_ms;
	size_t max_response_bytes;	/* bigger responses are an error */
};

/* A complete, changed configuration list for one (service, env, type). */
struct di_update {
	char *service;
	char *environment;
	char *type;			/* "BREAKPOINT" or "PROBE" */
	json_t *configs;		/* array of config objects (strings parsed) */
	struct di_update *next;
};

struct di_api_counters {
	uint64_t polls;
	uint64_t poll_errors;		/* HTTP errors, timeouts, bad JSON */
	uint64_t reports_sent;		/* status entries delivered */
	uint64_t report_errors;
	uint64_t reports_dropped;	/* queue overflow, refused by the API */
};

int di_api_start(struct di_api **out, const struct di_api_opts *o, char *err,
		 size_t err_len);
void di_api_stop(struct di_api *api);

/* Readable (an eventfd) when updates are waiting. */
int di_api_fd(const struct di_api *api);

/* Start or stop polling for a (service, environment); idempotent. Once
 * stopped, none of its updates are taken any more, queued ones included. */
void di_api_watch(struct di_api *api, const char *service,
		  const char *environment, bool on);

/* Take every waiting update (a list, oldest first), or NULL. */
struct di_update *di_api_take_updates(struct di_api *api);
void di_update_free(struct di_update *u);	/* the whole list */

/* Queue one status entry; sent soon, in batches of <= 100 per service. */
void di_api_report(struct di_api *api, const char *service,
		   const char *environment, const char *type,
		   const char *location_hash, const char *status,
		   const char *error_cause, int64_t time_ms);

void di_api_get_counters(struct di_api *api, struct di_api_counters *c);

/*
 * One list-instrumentation-configurations response body, parsed (pure; the
 * fuzzer and unit tests call it). *configs gets a new array of config
 * objects (ConfigurationData given as a JSON string is parsed; an entry
 * that is neither object nor valid JSON string is skipped and counted in
 * *skipped), *next_token a malloc'd token or NULL, *sync_interval_s the
 * server's SyncInterval or 0. 0, or -EINVAL with the reason in err.
 */
int di_parse_list_response(const char *body, size_t len, json_t **configs,
			   bool *changed, char **next_token,
			   unsigned int *sync_interval_s, unsigned int *skipped,
			   char *err, size_t err_len);

#endif /* PYDI_DI_API_H */
