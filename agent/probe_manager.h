/* SPDX-License-Identifier: MIT */
/*
 * The agent's probes: configurations from every source, the CPython
 * processes discovered, and one instance per (configuration, matching
 * process) with its slot, hook and status. Statuses are per process, as
 * ADOT's are; a configuration that failed in a process stays ERROR there
 * until the configuration itself changes.
 */
#ifndef PYDI_PROBE_MANAGER_H
#define PYDI_PROBE_MANAGER_H

#include <jansson.h>
#include <stdio.h>
#include <stdint.h>

#include "di_api.h"
#include "discovery.h"
#include "exporter.h"
#include "redact.h"

struct probe_manager;

struct pm_opts {
	struct exporter *exporter;
	struct di_api *api;		/* NULL: no DI API */
	const struct redactor *redactor;
	uint64_t lease_ms;
	unsigned int sweep_s;		/* status sweep + ACTIVE heartbeat */
	size_t ringbuf_bytes;
};

int pm_open(struct probe_manager **out, const struct pm_opts *o, char *err,
	    size_t err_len);
/* Unhook everything, clear every lease, free. */
void pm_close(struct probe_manager *pm);

int pm_engine_fd(struct probe_manager *pm);
void pm_engine_consume(struct probe_manager *pm);

/*
 * Replace the configurations one source holds for one scope (an API
 * (service, environment, type), a file of the config directory). Unchanged
 * configurations (same id and content) keep their instances and statuses.
 * Configs that do not parse are logged and, if they carry an id, reported
 * as ERROR. Does not take configs.
 */
void pm_set_configs(struct probe_manager *pm, const char *source,
		    const char *scope, const char *service,
		    const char *environment, json_t *configs);
/* One configuration from the control socket. 0, or -errno with err. */
int pm_add_config(struct probe_manager *pm, json_t *config, char *id_out,
		  size_t id_len, char *err, size_t err_len);
int pm_del_config(struct probe_manager *pm, const char *id);

void pm_process_event(struct probe_manager *pm, pid_t pid,
		      enum discovery_event ev);

/* Periodic work: call it after every wakeup, and no later than
 * pm_next_due_ns(). New processes, attaches due, MaxHits, expiry, leases,
 * 3.11 re-keying, status sweeps. */
void pm_tick(struct probe_manager *pm);
/* When pm_tick() next has work to do (monotonic ns; 0: now). */
uint64_t pm_next_due_ns(const struct probe_manager *pm);

/* Every probe with its per-process status and counters (probe list -j). */
json_t *pm_list(struct probe_manager *pm);
/* Prometheus text lines for the manager's counters. */
void pm_metrics(struct probe_manager *pm, FILE *out);

#endif /* PYDI_PROBE_MANAGER_H */
