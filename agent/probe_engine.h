/* SPDX-License-Identifier: MIT */
/*
 * The BPF side of probes, from userspace: load pyprobe, describe each target
 * process's layouts to it, attach its uprobes (through /proc/PID/map_files
 * only), keep the probe map and read the counters and the ring buffer.
 */
#ifndef PYDI_PROBE_ENGINE_H
#define PYDI_PROBE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "helper_client.h"
#include "pyprobe.h"
#include "pyproc.h"

struct probe_engine;

typedef int (*probe_event_fn)(void *ctx, const struct pyprobe_capture *cap,
			      size_t size);

/*
 * Load pyprobe with the program one mode attaches: the helper's hook, or
 * with eval_frame (--no-inject) the interpreter's _PyEval_EvalFrameDefault.
 */
int probe_engine_open(struct probe_engine **out, size_t ringbuf_bytes,
		      bool eval_frame, probe_event_fn on_event, void *ctx,
		      char *err, size_t err_len);
void probe_engine_close(struct probe_engine *pe);

/* Describe pp's layouts to BPF (needed before any of its probes fire). */
int probe_engine_add_process(struct probe_engine *pe, struct pyproc *pp,
			     char *err, size_t err_len);
int probe_engine_get_layout(struct probe_engine *pe, pid_t pid,
			    struct pyprobe_layout *lay);
/* Replace a process's layouts (what its helper told us added). */
int probe_engine_set_layout(struct probe_engine *pe, pid_t pid,
			    const struct pyprobe_layout *lay);
void probe_engine_remove_process(struct probe_engine *pe, pid_t pid);

/*
 * The uprobe on the helper's hook in hc's process, as a perf event fd (or
 * -errno). Creating it waits for the kernel (an RCU grace period, ~10 ms)
 * but needs no BPF, so it may run while pyprobe is being verified.
 */
int probe_engine_open_hook_event(const struct helper_client *hc, char *err,
				 size_t err_len);
/* Attach pydi_hook to that event (taking event_fd; -1: create it now). */
int probe_engine_attach_hook(struct probe_engine *pe, const struct helper_client *hc,
			     int event_fd, char *err, size_t err_len);
/* --no-inject: attach to the interpreter's _PyEval_EvalFrameDefault. */
int probe_engine_attach_eval_frame(struct probe_engine *pe, struct pyproc *pp,
				   char *err, size_t err_len);

int probe_engine_set_probe(struct probe_engine *pe,
			   const struct pyprobe_key *key,
			   const struct pyprobe_config *cfg);
int probe_engine_del_probe(struct probe_engine *pe,
			   const struct pyprobe_key *key);
int probe_engine_stats(struct probe_engine *pe, uint32_t slot,
		       struct pyprobe_stats *st);
int probe_engine_reset_stats(struct probe_engine *pe, uint32_t slot);

/* The ring buffer's epoll fd: readable when captures wait. */
int probe_engine_fd(struct probe_engine *pe);

/*
 * Wait up to timeout_ms for events and consume them, for at most ~50 ms more
 * however fast they come: count consumed, or -errno.
 */
int probe_engine_poll(struct probe_engine *pe, int timeout_ms);
/*
 * Consume what the ring buffer holds, in polls like the above, until it is
 * empty or budget_ms have passed (its producers may not have stopped):
 * count consumed, or -errno.
 */
int probe_engine_drain(struct probe_engine *pe, int budget_ms);

#endif /* PYDI_PROBE_ENGINE_H */
