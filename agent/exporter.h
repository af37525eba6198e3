/* SPDX-License-Identifier: MIT */
/*
 * Where snapshots go: OTLP/HTTP JSON logs (batched, optionally gzip, retried
 * with backoff) and/or JSON lines to a file or stdout. A bounded queue sits
 * between the capture path and the network; a full queue drops and counts,
 * it never blocks. The sending happens on the exporter's own thread.
 */
#ifndef PYDI_EXPORTER_H
#define PYDI_EXPORTER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct exporter;

struct exporter_opts {
	const char *otlp_endpoint;	/* NULL: no OTLP */
	bool gzip;
	const char *jsonl_path;		/* "-": stdout; NULL: none */
	size_t queue_max;
	unsigned int batch_max;
	unsigned int flush_ms;		/* a partial batch waits at most this */
	unsigned int timeout_ms;	/* per OTLP request */
	size_t max_snapshot_bytes;	/* encoded size cap (default 1 MiB) */
	unsigned int max_attempts;	/* per OTLP batch; 0: 5 */
	unsigned int backoff_ms;	/* first retry delay, doubling; 0: 500 */
};

struct exporter_counters {
	uint64_t submitted;
	uint64_t exported;		/* accepted by the collector */
	uint64_t written;		/* snapshots written as JSON lines */
	uint64_t dropped_queue_full;
	uint64_t dropped_export_failed;	/* gave up after retries */
	uint64_t dropped_write_failed;	/* JSON-lines sink errors (e.g. ENOSPC) */
	uint64_t export_errors;		/* failed OTLP attempts */
	uint64_t truncated;		/* snapshots cut to max_snapshot_bytes */
};

int exporter_start(struct exporter **out, const struct exporter_opts *o,
		   char *err, size_t err_len);
/* Flush what is queued for up to drain_ms, then stop. */
void exporter_stop(struct exporter *ex, unsigned int drain_ms);

/*
 * Hand over one snapshot as snapshot_build made it (with "service",
 * "environment", "location_hash", "instrumentation_type", and the agent's
 * "pid", "probe"). Takes the reference. Never blocks: false if dropped.
 */
bool exporter_submit(struct exporter *ex, json_t *snapshot);

/* A record for the JSON-lines sink only (statuses). Takes the reference. */
void exporter_submit_line(struct exporter *ex, json_t *record);

void exporter_get_counters(struct exporter *ex, struct exporter_counters *c);

/* The OTLP/HTTP JSON request body for a batch of snapshots (exposed for
 * tests): resourceLogs grouped by (service, environment). New reference. */
json_t *otlp_logs_request(json_t *const *snapshots, size_t n);

#endif /* PYDI_EXPORTER_H */
