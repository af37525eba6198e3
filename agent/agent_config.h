/* SPDX-License-Identifier: MIT */
/*
 * pydi agent's settings: defaults, then --config FILE (JSON,
 * schemas/agent-config.schema.json), then the environment variables ADOT's
 * debugger reads, so settings carry over.
 */
#ifndef PYDI_AGENT_CONFIG_H
#define PYDI_AGENT_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* Where ADOT's debugger sends its logs when told nothing else. */
#define ADOT_DEFAULT_LOGS_ENDPOINT "http://localhost:4316/v1/logs"

struct agent_config {
	char *api_url;			/* DI API base URL; NULL: local sources only */
	unsigned int breakpoint_poll_s;	/* 60 */
	unsigned int probe_poll_s;	/* 600 */
	unsigned int api_timeout_ms;	/* per request, 10000 */
	char *otlp_endpoint;		/* NULL: none (ADOT's default with a DI API) */
	bool otlp_gzip;			/* also OTEL_EXPORTER_OTLP_[LOGS_]COMPRESSION=gzip */
	char *jsonl_path;		/* "-": stdout; NULL: none */
	size_t queue_max;		/* snapshots waiting for export, 10000 */
	unsigned int batch_max;		/* snapshots per OTLP request, 256 */
	char *config_dir;		/* watched probe directory; NULL: none */
	char *control_socket;		/* "/run/pydi/agent.sock" */
	char *metrics_listen;		/* "127.0.0.1:9464"; NULL: off */
	unsigned int rescan_s;		/* /proc rescan backstop, 30 */
	unsigned int status_sweep_s;	/* periodic status sweep + ACTIVE heartbeat, 60 */
	unsigned int lease_ms;		/* hooks revert this long after the agent dies, 5000 */
	size_t max_snapshot_bytes;	/* 1 MiB: bigger snapshots are truncated */
	char **redact_names;		/* extra identifiers, NULL-terminated */
	char **redact_types;		/* type names never captured, NULL-terminated */
	char *log_level;		/* "info" */
};

/* Fill c: defaults, the file (if path), then the environment. 0 or -errno
 * with a one-line reason (file, line, field) in err. */
int agent_config_load(const char *path, struct agent_config *c, char *err,
		      size_t err_len);
void agent_config_free(struct agent_config *c);

#endif /* PYDI_AGENT_CONFIG_H */
