/* SPDX-License-Identifier: MIT */
/*
 * A process pydi instruments through its helper, and the probes hooked in
 * it: what `pydi trace` and the agent share. Open (introspect, describe the
 * layouts to BPF), inject (load the helper, attach the hook uprobe, lease),
 * then hook probes into slots: helper hook command, BPF keys, gate.
 */
#ifndef PYDI_ATTACH_H
#define PYDI_ATTACH_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "inject.h"
#include "probe_engine.h"
#include "pyproc.h"
#include "snapshot.h"

struct attached_proc {
	struct pyproc pp;
	int pidfd;			/* this process, whatever its pid names later */
	struct helper_client hc;
	struct snapshot_target snap;
	struct inject_result inject;
	bool opened;
	bool injected;
	uint64_t ends_read;		/* the helper's ends ring: records taken */
};

/* pyproc_open + layouts to BPF. -EMEDIUMTYPE when pydi cannot instrument
 * the process (reason in err), other -errno on failure. */
int attach_open(struct attached_proc *ap, pid_t pid, struct probe_engine *pe,
		char *err, size_t err_len);
/* Load the helper (or reuse it), attach the hook uprobe, set the lease. */
int attach_inject(struct attached_proc *ap, struct probe_engine *pe,
		  uint64_t lease_ms, char *err, size_t err_len);

/*
 * The same in steps that need no BPF (open_proc, inject_helper) and steps
 * that do (probe_engine_add_process, hook_uprobe), so that a caller can
 * verify pyprobe meanwhile. hook_uprobe takes event_fd (-1: create it).
 */
int attach_open_proc(struct attached_proc *ap, pid_t pid, char *err, size_t err_len);
int attach_inject_helper(struct attached_proc *ap, uint64_t lease_ms, char *err,
			 size_t err_len);
int attach_hook_uprobe(struct attached_proc *ap, struct probe_engine *pe, int event_fd,
		       char *err, size_t err_len);

/*
 * Still the process we opened? A pid is reused once its process is gone;
 * every write into the target and every decoded capture is checked against
 * the pidfd taken at open, never against the pid.
 */
bool attach_alive(const struct attached_proc *ap);
/* Renew the helper's lease (if the process is still ours). */
void attach_renew_lease(struct attached_proc *ap, uint64_t lease_ms);
/* Clear the lease (hooks stay until unhooked) and forget the process. */
void attach_close(struct attached_proc *ap, struct probe_engine *pe);

/* One helper command: the parsed reply, or NULL with err. Takes cmd. */
json_t *attach_command(struct attached_proc *ap, json_t *cmd, char *err,
		       size_t err_len);

int attach_read_gate(struct attached_proc *ap, uint32_t slot,
		     struct pydi_gate *gate);
/* Every slot's gate (PYDI_MAX_GATES of them) in one read. */
int attach_read_gates(struct attached_proc *ap, struct pydi_gate *gates);
void attach_set_gate(struct attached_proc *ap, uint32_t slot, bool armed,
		     uint64_t next_allowed_ns);
/*
 * The call ends the helper told in its ends ring (PYDI_GATE_END_IN_RING)
 * since the last call, oldest first, each handed to fn; *lost counts the
 * ones overwritten before they could be read.
 */
void attach_take_ends(struct attached_proc *ap,
		      void (*fn)(void *ctx, const struct pydi_end *end), void *ctx,
		      uint64_t *lost);
/* True if no one (another pydi included) has armed this slot's gate. */
bool attach_slot_free(struct attached_proc *ap, uint32_t slot);

/* What to hook and capture. */
struct probe_spec {
	const char *probe_id;
	const char *target;		/* module:qualname[@LINE] or file.py:LINE */
	bool line_probe;
	unsigned int capture;		/* PYPROBE_CAPTURE_* */
	uint32_t max_hits;		/* 0: unlimited */
	double rate;			/* snapshots/s; <= 0: unlimited */
	struct snapshot_limits limits;
};

struct hooked_probe {
	uint32_t slot;
	bool line_probe;
	bool hooked;			/* the helper holds a hook for us */
	bool rekey;			/* 3.11: other probes may swap our code */
	bool ends_in_ring;		/* its returns are told in the helper's ends ring */
	uint64_t hook_changes_seen;	/* the helper's hook_changes when last followed */
	json_t *codes;			/* the hook reply's codes */
	json_t *routes;			/* framework routes that reach the code */
	json_t *keys;			/* BPF keys set, for removal */
	char module[256];
	char qualname[512];
	char file[1024];
	int line;			/* resolved line of a line probe */
	struct probe_spec spec;		/* numbers only: ids and target not kept */
	struct pyprobe_config cfg;
};

bool probe_target_is_line(const char *target);

/* The BPF side of spec for a slot and the code it probes (ci may be NULL). */
void probe_spec_config(struct pyprobe_config *c, const struct probe_spec *spec,
		       uint32_t slot, const struct pycode_info *ci);

/*
 * Hook spec into ap at slot, set its BPF keys and arm its gate. On failure
 * *cause is the status' ErrorCause (LINE_NOT_EXECUTABLE, METHOD_NOT_FOUND,
 * …; RUNTIME_ERROR when pydi itself failed) and err the message; returns
 * -ENOENT for a probe error, another -errno when attaching failed.
 */
int hooked_probe_attach(struct attached_proc *ap, struct probe_engine *pe,
			const struct probe_spec *spec, uint32_t slot,
			struct hooked_probe *hp, const char **cause, char *err,
			size_t err_len);
/* The same in two steps: the helper's hook command, then keys and gate. */
int hooked_probe_hook(struct attached_proc *ap, const struct probe_spec *spec,
		      uint32_t slot, struct hooked_probe *hp, const char **cause,
		      char *err, size_t err_len);
int hooked_probe_arm(struct attached_proc *ap, struct probe_engine *pe,
		     struct hooked_probe *hp, char *err, size_t err_len);
/* Disarm, remove the BPF keys, unhook (best effort: the lease remains). */
void hooked_probe_detach(struct attached_proc *ap, struct probe_engine *pe,
			 const char *probe_id, struct hooked_probe *hp);
void hooked_probe_free(struct hooked_probe *hp);

/* After a capture: keep the gate's next allowed time current. */
void hooked_probe_refresh_gate(struct attached_proc *ap, struct probe_engine *pe,
			       struct hooked_probe *hp);
/* Every hook the helper holds (of every pydi), from its "hooks" reply, as
 * an object: probe id -> array of those hooks. NULL if the command failed. */
json_t *attach_hooks_by_probe(struct attached_proc *ap);
/* 3.11: follow the code ids attach_hooks_by_probe() gives probe_id. */
void hooked_probe_follow_hooks(struct attached_proc *ap, struct probe_engine *pe,
			       const char *probe_id, struct hooked_probe *hp,
			       const json_t *by_probe);
/* 3.11: follow the code ids the helper now reports for probe_id, if the
 * helper's hooks changed since the last time. */
void hooked_probe_follow_code(struct attached_proc *ap, struct probe_engine *pe,
			      const char *probe_id, struct hooked_probe *hp);
/* The hook's warnings (e.g. frames still running old code). New array. */
json_t *hooked_probe_warnings(const struct hooked_probe *hp);

/* The snapshot_probe for decoding hp's captures. */
void hooked_probe_describe(const struct hooked_probe *hp,
			   const struct probe_spec *spec,
			   struct snapshot_probe *sp);

#endif /* PYDI_ATTACH_H */
