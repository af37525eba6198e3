// SPDX-License-Identifier: MIT
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "attach.h"
#include "call_pairs.h"
#include "clock.h"
#include "discovery.h"
#include "errbuf.h"
#include "probe_config.h"
#include "probe_manager.h"

#define NS_PER_MS		1000000ull
#define NS_PER_S		1000000000ull
#define FIRST_LOOK_NS		(200 * NS_PER_MS)	/* let exec settle */
#define LOOK_RETRIES		5
#define STARTUP_GRACE_S		20	/* modules may still be importing */
#define SECOND_NS		NS_PER_S
#define WORK_BUDGET_NS		(50 * NS_PER_MS)	/* slow work per tick */
#define WALK_BACKSTOP_NS	(10 * NS_PER_S)
#define GC_EVERY_NS		(10 * NS_PER_S)
#define MAX_HITS_CHECK_NS	(100 * NS_PER_MS)
#define DRAIN_NS		(2 * NS_PER_S)
#define TOLD_ENDS_NS		(10 * NS_PER_MS)	/* look again for told call ends */
#define AGENT_PROBE_PREFIX	"agent/"
#define FAILED_MEMORY_MAX	4096
/* What ADOT's client sends when the resource names no environment. */
#define UNKNOWN_ENVIRONMENT	"UnknownEnvironment"

enum proc_state {
	PROC_CANDIDATE,		/* look at it at check_at_ns */
	PROC_IGNORED,		/* no service identity, or not CPython */
	PROC_OPEN,		/* CPython with an identity: probes may match */
	PROC_UNSUPPORTED,	/* CPython pydi cannot instrument, or not CPython
				 * where a Pid names it */
};

/* What the periodic walks read comes first: the struct spans many pages. */
struct proc_entry {
	pid_t pid;
	uint64_t start_time;
	enum proc_state state;
	bool injected;
	bool follow_codes;		/* some pydi changed the hooks: codes may have moved */
	bool asked_hooks;		/* this pass, for hooks (NULL: the command failed) */
	bool watching;			/* DI API polls for its service */
	bool seen;			/* rescan mark */
	uint64_t check_at_ns;
	unsigned int looks;
	uint64_t lease_expiries;	/* the helper's count when we last looked */
	uint64_t hook_changes_seen;	/* its hook_changes when codes were last followed */
	uint64_t hook_changes_now;	/* and at the start of this pass */
	json_t *hooks;			/* its hooks by probe id for this pass, or NULL */
	struct pydi_gate *gates;	/* its gates for this pass, or NULL */
	json_t *attrs;			/* resource attributes, for AttributeFilters */
	struct service_identity id;
	char unsupported[256];
	struct attached_proc *ap;	/* OPEN and UNSUPPORTED only (it is large) */
};

struct cfg_entry {
	struct probe_config pc;
	char source[8];			/* "api", "dir", "socket" */
	char scope[640];
	char service[256];		/* api: the scope's service and environment */
	char environment[256];
	bool api;
	bool keep;			/* mark while a source's set is replaced */
	uint64_t pid_start_time;	/* Pid: that process only (0: the first seen) */
};

enum inst_status { IS_PENDING, IS_READY, IS_ACTIVE, IS_DISABLED, IS_ERROR };

static const char *const status_names[] = {
	[IS_PENDING] = "PENDING", [IS_READY] = "READY", [IS_ACTIVE] = "ACTIVE",
	[IS_DISABLED] = "DISABLED", [IS_ERROR] = "ERROR",
};

struct probe_manager;

struct instance {
	struct probe_manager *pm;
	struct cfg_entry *cfg;
	struct proc_entry *proc;
	char probe_id[PROBE_ID_MAX + 32];
	char target[800];
	struct probe_spec spec;
	struct hooked_probe hp;
	bool has_slot;
	struct snapshot_probe sp;
	enum inst_status status;
	char cause[32];
	char message[512];
	uint64_t retry_at_ns;
	uint64_t drain_until_ns;	/* MaxHits reached: waiting for call ends */
	unsigned int attempts;
	uint64_t snapshots;
	struct pyprobe_stats stats;	/* as last read: kept after unhooking */
	struct pydi_gate gate;
	struct call_pairs pairs;
};

struct probe_manager {
	struct pm_opts o;
	struct probe_engine *engine;
	struct proc_entry **procs;
	size_t nprocs, procs_cap;
	struct cfg_entry **cfgs;
	size_t ncfgs, cfgs_cap;
	struct instance **insts;
	size_t ninsts, insts_cap;
	struct instance *by_slot[PYPROBE_MAX_PROBES];
	uint32_t next_slot;
	json_t *failed;			/* "id/fingerprint/pid/start" -> [cause, message] */
	bool dirty;			/* configs or processes changed: reconcile */
	uint64_t procs_due_ns;		/* a candidate's look is due: walk them */
	uint64_t insts_due_ns;		/* a retry, drain, expiry, MaxHits check */
	uint64_t insts_walked_ns;
	uint64_t last_gc_ns;
	bool watch_insts;		/* some instance READY or with calls in flight */
	uint64_t told_ends_due_ns;	/* an entry waits for its told end (UINT64_MAX: none) */
	uint64_t told_ends_lost;	/* overwritten in a helper's ring before we read them */
	uint64_t last_second_ns;
	uint64_t last_sweep_ns;
	uint64_t injection_failures;
	uint64_t snapshots_submitted;
	uint64_t snapshots_dropped;
};

/* --- small vectors -------------------------------------------------------- */

static int vec_push(void ***items, size_t *n, size_t *cap, void *item)
{
	if (*n == *cap) {
		size_t ncap = *cap ? *cap * 2 : 16;
		void **grown = realloc(*items, ncap * sizeof(*grown));

		if (!grown)
			return -ENOMEM;
		*items = grown;
		*cap = ncap;
	}
	(*items)[(*n)++] = item;
	return 0;
}

static void vec_remove(void **items, size_t *n, size_t i)
{
	items[i] = items[--*n];
}

#define VEC_PUSH(pm, name, item) \
	vec_push((void ***)&(pm)->name, &(pm)->n##name, &(pm)->name##_cap, (item))

/* --- statuses ------------------------------------------------------------- */

static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void failed_key(const struct instance *in, char *key, size_t len)
{
	snprintf(key, len, "%s/%s/%d/%llu", in->cfg->pc.id, in->cfg->pc.fingerprint,
		 in->proc->pid, (unsigned long long)in->proc->start_time);
}

/* Send the instance's current status: JSON-lines record, DI API report. */
static void report(struct probe_manager *pm, struct instance *in)
{
	const struct cfg_entry *c = in->cfg;
	const char *status = status_names[in->status];
	json_t *rec;

	if (in->status == IS_PENDING)
		return;
	rec = json_pack("{s:s,s:s,s:i,s:s,s:s,s:s,s:s,s:I}", "type", "status", "probe",
			c->pc.id, "pid", in->proc->pid, "service", in->proc->id.service_name,
			"status", status, "source", c->source, "target", in->target,
			"time", (json_int_t)wall_ms());
	if (in->cause[0])
		json_object_set_new(rec, "error_cause", json_string(in->cause));
	if (in->message[0])
		json_object_set_new(rec, "message", json_string(in->message));
	if (in->hp.routes && in->status != IS_ERROR)
		json_object_set(rec, "routes", in->hp.routes);
	exporter_submit_line(pm->o.exporter, rec);
	if (c->api && pm->o.api)
		di_api_report(pm->o.api, c->service, c->environment, probe_kind_name(c->pc.kind),
			      c->pc.id, status, in->cause[0] ? in->cause : NULL, wall_ms());
}

/*
 * Move an instance to a new status and report it. The rule of the status
 * model: ERROR and DISABLED are final for this (config content, process),
 * and ACTIVE never goes back to READY.
 */
static void set_status(struct probe_manager *pm, struct instance *in,
		       enum inst_status st, const char *cause, const char *message)
{
	if (in->status == IS_ERROR || in->status == IS_DISABLED)
		return;
	if (st == IS_READY && in->status == IS_ACTIVE)
		return;
	in->status = st;
	if (st == IS_READY)
		pm->watch_insts = true;
	snprintf(in->cause, sizeof(in->cause), "%s", cause ? cause : "");
	snprintf(in->message, sizeof(in->message), "%s", message ? message : "");
	fprintf(stderr, "pydi agent: probe %s pid %d: %s%s%s%s%s\n", in->cfg->pc.id,
		in->proc->pid, status_names[st], cause ? " " : "", cause ? cause : "",
		message && *message ? ": " : "", message ? message : "");
	if (st == IS_ERROR && json_object_size(pm->failed) < FAILED_MEMORY_MAX) {
		char key[512];

		failed_key(in, key, sizeof(key));
		json_object_set_new(pm->failed, key, json_pack("[s,s]", in->cause, in->message));
	}
	report(pm, in);
}

/* --- slots ---------------------------------------------------------------- */

static int alloc_slot(struct probe_manager *pm, struct instance *in, uint32_t *slot)
{
	for (uint32_t i = 0; i < PYPROBE_MAX_PROBES; i++) {
		uint32_t s = (pm->next_slot + i) % PYPROBE_MAX_PROBES;

		if (pm->by_slot[s] || !attach_slot_free(in->proc->ap, s))
			continue;
		pm->next_slot = s + 1;
		*slot = s;
		return 0;
	}
	return -ENOSPC;
}

/* --- snapshots ------------------------------------------------------------ */

static void emit(struct probe_manager *pm, struct instance *in,
		 const struct pyprobe_capture *first, size_t first_size,
		 const struct pyprobe_capture *ret, size_t ret_size)
{
	json_t *snap = snapshot_build(&in->proc->ap->snap, &in->sp, first, first_size, ret,
				      ret_size);

	if (!snap)
		return;
	/* Decoded by pid: if the process is gone, the pid may name another
	 * one by now, and what was read is not this snapshot's. */
	if (!attach_alive(in->proc->ap)) {
		json_decref(snap);
		return;
	}
	json_object_set_new(snap, "pid", json_integer(in->proc->pid));
	json_object_set_new(snap, "probe", json_string(in->cfg->pc.id));
	in->snapshots++;
	if (exporter_submit(pm->o.exporter, snap))
		pm->snapshots_submitted++;
	else
		pm->snapshots_dropped++;
}

static void emit_pair(void *ctx, const struct pyprobe_capture *first, size_t first_size,
		      const struct pyprobe_capture *end, size_t end_size)
{
	struct instance *in = ctx;

	emit(in->pm, in, first, first_size, end, end_size);
}

static int on_capture(void *ctx, const struct pyprobe_capture *cap, size_t size)
{
	struct probe_manager *pm = ctx;
	struct instance *in = cap->slot < PYPROBE_MAX_PROBES ? pm->by_slot[cap->slot] : NULL;

	if (!in || cap->tgid != (uint32_t)in->proc->pid)
		return 0;
	if (in->status == IS_READY)
		set_status(pm, in, IS_ACTIVE, NULL, NULL);
	if (in->hp.cfg.max_hits)
		/* check_max_hits(), at most once a tick however fast they come */
		due_at(&pm->insts_due_ns, pm->insts_walked_ns + MAX_HITS_CHECK_NS);
	pm->watch_insts = true;		/* its call's end may never come */
	call_pairs_add(&in->pairs, in->hp.cfg.pairs_return, cap, size, emit_pair, in);
	if (in->hp.ends_in_ring && cap->event == PYPROBE_EV_ENTRY)
		due_at(&pm->told_ends_due_ns, monotonic_ns() + TOLD_ENDS_NS);
	if (!in->drain_until_ns)
		hooked_probe_refresh_gate(in->proc->ap, pm->engine, &in->hp);
	return 0;
}

/*
 * The returns the helper told in its ends ring (PYDI_GATE_END_IN_RING) go to
 * the instances' waiting entries. Looked for after each batch of captures,
 * and every TOLD_ENDS_NS while an entry still waits for one.
 */
struct told_from {
	struct probe_manager *pm;
	struct proc_entry *p;
};

static void on_told_end(void *ctx, const struct pydi_end *end)
{
	struct told_from *from = ctx;
	struct instance *in = end->slot < PYPROBE_MAX_PROBES ?
			      from->pm->by_slot[end->slot] : NULL;

	if (in && in->proc == from->p)
		call_pairs_told_end(&in->pairs, end->frame, end->ts_ns, emit_pair, in);
}

static void take_told_ends(struct probe_manager *pm)
{
	pm->told_ends_due_ns = UINT64_MAX;
	for (size_t i = 0; i < pm->nprocs; i++) {
		struct told_from from = { pm, pm->procs[i] };

		if (from.p->ap && from.p->injected)
			attach_take_ends(from.p->ap, on_told_end, &from, &pm->told_ends_lost);
	}
	for (size_t i = 0; i < pm->ninsts; i++)
		if (pm->insts[i]->has_slot && pm->insts[i]->hp.ends_in_ring &&
		    !call_pairs_empty(&pm->insts[i]->pairs)) {
			pm->told_ends_due_ns = monotonic_ns() + TOLD_ENDS_NS;
			break;
		}
}

/* --- instances ------------------------------------------------------------ */

/* Read the slot's counters into the instance (they outlive the slot). */
static void read_counters(struct probe_manager *pm, struct instance *in)
{
	if (!in->has_slot)
		return;
	probe_engine_stats(pm->engine, in->hp.slot, &in->stats);
	attach_read_gate(in->proc->ap, in->hp.slot, &in->gate);
}

static void unhook(struct probe_manager *pm, struct instance *in)
{
	if (in->has_slot) {
		/* Let the returns of captured calls arrive first. */
		probe_engine_poll(pm->engine, 0);
		take_told_ends(pm);
		read_counters(pm, in);
		hooked_probe_detach(in->proc->ap, pm->engine, in->probe_id, &in->hp);
		pm->by_slot[in->hp.slot] = NULL;
		in->has_slot = false;
	}
	call_pairs_evict(&in->pairs, true, emit_pair, in);
}

static void inst_free(struct probe_manager *pm, struct instance *in, bool process_alive)
{
	if (process_alive) {
		unhook(pm, in);
	} else if (in->has_slot) {
		pm->by_slot[in->hp.slot] = NULL;
	}
	call_pairs_clear(&in->pairs);
	hooked_probe_free(&in->hp);
	free(in);
}

static unsigned int clampu(unsigned int v, unsigned int max)
{
	return v > max ? max : v;
}

static void fill_spec(struct instance *in)
{
	const struct probe_config *pc = &in->cfg->pc;
	struct probe_spec *s = &in->spec;
	unsigned int depth = pc->limits.max_object_depth > pc->limits.max_collection_depth ?
		pc->limits.max_object_depth : pc->limits.max_collection_depth;

	probe_config_target(pc, in->target, sizeof(in->target));
	snprintf(in->probe_id, sizeof(in->probe_id), AGENT_PROBE_PREFIX "%s/%s", pc->id,
		 pc->fingerprint);
	s->probe_id = in->probe_id;
	s->target = in->target;
	s->line_probe = pc->line > 0;
	if (pc->capture_arguments && !s->line_probe)
		s->capture |= PYPROBE_CAPTURE_ARGS;
	if (pc->capture_locals && s->line_probe)
		s->capture |= PYPROBE_CAPTURE_LOCALS;
	if (pc->capture_return && !s->line_probe)
		s->capture |= PYPROBE_CAPTURE_RETURN;
	if (pc->capture_stack)
		s->capture |= PYPROBE_CAPTURE_STACK;
	s->max_hits = pc->kind == PROBE_KIND_PROBE ? 0 : pc->limits.max_hits;
	s->rate = pc->rate;
	s->limits.max_string = clampu(pc->limits.max_string, PYPROBE_STR_MAX);
	s->limits.max_width = clampu(pc->limits.max_width, PYPROBE_WIDTH_MAX);
	s->limits.max_depth = clampu(depth, 8);
	s->limits.max_fields = clampu(pc->limits.max_fields, PYPROBE_WIDTH_MAX);
	s->limits.max_frames = clampu(pc->limits.max_frames, PYPROBE_MAX_FRAMES);
}

static void fill_snapshot_probe(struct probe_manager *pm, struct instance *in)
{
	const struct probe_config *pc = &in->cfg->pc;

	hooked_probe_describe(&in->hp, &in->spec, &in->sp);
	in->sp.location_hash = pc->id;
	in->sp.instrumentation_type = probe_kind_name(pc->kind);
	in->sp.redactor = pm->o.redactor;
	/* [] captures all, a list only those names. */
	in->sp.args_filter = json_array_size(pc->capture_arguments) ? pc->capture_arguments : NULL;
	in->sp.locals_filter = json_array_size(pc->capture_locals) ? pc->capture_locals : NULL;
}

static struct instance *inst_new(struct probe_manager *pm, struct cfg_entry *c,
				 struct proc_entry *p)
{
	struct instance *in = calloc(1, sizeof(*in));
	char key[512];
	json_t *failed;

	if (!in)
		return NULL;
	in->pm = pm;
	in->cfg = c;
	in->proc = p;
	fill_spec(in);
	if (VEC_PUSH(pm, insts, in)) {
		free(in);
		return NULL;
	}
	/* Failed here before with this very content: still failed. */
	failed_key(in, key, sizeof(key));
	failed = json_object_get(pm->failed, key);
	if (failed) {
		in->status = IS_ERROR;
		snprintf(in->cause, sizeof(in->cause), "%s",
			 json_string_value(json_array_get(failed, 0)));
		snprintf(in->message, sizeof(in->message), "%s",
			 json_string_value(json_array_get(failed, 1)));
		report(pm, in);
	}
	return in;
}

/* Seconds the process has been running (boot-time clock vs its start). */
static double process_age_s(const struct proc_entry *p)
{
	struct timespec ts;
	long hz = sysconf(_SC_CLK_TCK);

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9 - (double)p->start_time / (hz > 0 ? hz : 100);
}

/* A failure that may be the process still starting: try again later. */
static bool retry_later(struct instance *in, const char *why)
{
	double age = process_age_s(in->proc);
	uint64_t backoff;

	if (age > STARTUP_GRACE_S)
		return false;
	backoff = (250 * NS_PER_MS) << (in->attempts < 3 ? in->attempts : 3);
	in->attempts++;
	in->retry_at_ns = monotonic_ns() + backoff;
	if (in->attempts == 1)
		fprintf(stderr, "pydi agent: probe %s pid %d: %s (the process started %.1f s ago: "
			"retrying for up to %d s)\n", in->cfg->pc.id, in->proc->pid, why, age,
			STARTUP_GRACE_S);
	return true;
}

/* Hooks the agent left in a process it did not know (a crashed agent, or
 * a forked worker that inherited its parent's helper): remove them. */
static void clean_stale_hooks(struct probe_manager *pm, struct proc_entry *p)
{
	char err[256];
	json_t *reply, *hook;
	size_t i;

	(void)pm;
	reply = attach_command(p->ap, json_pack("{s:s}", "cmd", "hooks"), err, sizeof(err));
	json_array_foreach(json_object_get(reply, "hooks"), i, hook) {
		const char *id = json_string_value(json_object_get(hook, "probe_id"));
		json_t *r;

		if (!id || strncmp(id, AGENT_PROBE_PREFIX, strlen(AGENT_PROBE_PREFIX)) != 0)
			continue;
		r = attach_command(p->ap, json_pack("{s:s,s:s}", "cmd", "unhook", "probe_id", id),
				   err, sizeof(err));
		json_decref(r);
		if (json_is_integer(json_object_get(hook, "slot")))
			attach_set_gate(p->ap, (uint32_t)json_integer_value(
				json_object_get(hook, "slot")), false, 0);
	}
	json_decref(reply);
}

/* Milliseconds until the configuration's ExpiresAt, INT64_MAX if never. */
static int64_t ms_to_expiry(const struct cfg_entry *c)
{
	if (c->pc.kind != PROBE_KIND_BREAKPOINT || !c->pc.expires_at_ms)
		return INT64_MAX;
	return c->pc.expires_at_ms - wall_ms();
}

static bool expired(const struct cfg_entry *c)
{
	return ms_to_expiry(c) <= 0;
}

static void try_attach(struct probe_manager *pm, struct instance *in)
{
	struct proc_entry *p = in->proc;
	const char *cause;
	char err[512];
	uint32_t slot;
	int ret;

	if (!in->cfg->pc.language_python) {
		snprintf(err, sizeof(err), "Language %s: pydi instruments Python",
			 in->cfg->pc.language[0] ? in->cfg->pc.language : "(none)");
		set_status(pm, in, IS_ERROR, "LANGUAGE_MISMATCH", err);
		return;
	}
	if (expired(in->cfg)) {
		set_status(pm, in, IS_DISABLED, NULL, "expired (ExpiresAt)");
		return;
	}
	if (p->state == PROC_UNSUPPORTED) {
		set_status(pm, in, IS_ERROR, "LANGUAGE_MISMATCH", p->unsupported);
		return;
	}
	if (!p->injected) {
		ret = attach_inject(p->ap, pm->engine, pm->o.lease_ms, err, sizeof(err));
		if (ret) {
			pm->injection_failures++;
			if (!retry_later(in, err))
				set_status(pm, in, IS_ERROR, "RUNTIME_ERROR", err);
			return;
		}
		p->injected = true;
		if (helper_read_state(&p->ap->hc) == 0)
			p->lease_expiries = p->ap->hc.state.lease_expiries;
		clean_stale_hooks(pm, p);
	}
	if (alloc_slot(pm, in, &slot)) {
		set_status(pm, in, IS_ERROR, "RUNTIME_ERROR", "no free probe slot");
		return;
	}
	ret = hooked_probe_attach(p->ap, pm->engine, &in->spec, slot, &in->hp, &cause, err,
				  sizeof(err));
	if (ret) {
		bool maybe_loading = ret == -ENOENT && (strcmp(cause, "FILE_NOT_FOUND") == 0 ||
							strcmp(cause, "METHOD_NOT_FOUND") == 0);

		hooked_probe_detach(p->ap, pm->engine, in->probe_id, &in->hp);
		hooked_probe_free(&in->hp);
		if (maybe_loading && retry_later(in, err))
			return;
		set_status(pm, in, IS_ERROR, cause, err);
		return;
	}
	pm->by_slot[slot] = in;
	in->has_slot = true;
	fill_snapshot_probe(pm, in);
	set_status(pm, in, IS_READY, NULL, NULL);
}

/*
 * MaxHits reached: no new call through the gate (BPF drops any that still
 * trap), but the ends of the captured calls still pass it, so each snapshot
 * gets its return value; unhook once they are in, or after DRAIN_NS.
 */
static void check_max_hits(struct probe_manager *pm, struct instance *in)
{
	struct pyprobe_stats st;

	if (!in->has_slot || !in->hp.cfg.max_hits)
		return;
	if (!in->drain_until_ns) {
		if (probe_engine_stats(pm->engine, in->hp.slot, &st) ||
		    st.emitted < in->hp.cfg.max_hits)
			return;
		attach_set_gate(in->proc->ap, in->hp.slot, true, UINT64_MAX);
		in->drain_until_ns = monotonic_ns() + DRAIN_NS;
		return;
	}
	if (!call_pairs_empty(&in->pairs) && monotonic_ns() < in->drain_until_ns)
		return;
	unhook(pm, in);
	set_status(pm, in, IS_DISABLED, NULL, "MaxHits reached");
}

/* --- processes ------------------------------------------------------------ */

static struct proc_entry *find_proc(struct probe_manager *pm, pid_t pid, size_t *index)
{
	for (size_t i = 0; i < pm->nprocs; i++)
		if (pm->procs[i]->pid == pid) {
			if (index)
				*index = i;
			return pm->procs[i];
		}
	return NULL;
}

static void proc_drop(struct probe_manager *pm, size_t index, bool alive)
{
	struct proc_entry *p = pm->procs[index];

	/* Only an opened process, or one a Pid names, has instances. */
	for (size_t i = 0; i < pm->ninsts; i++) {
		if (pm->insts[i]->proc != p)
			continue;
		inst_free(pm, pm->insts[i], alive);
		vec_remove((void **)pm->insts, &pm->ninsts, i--);
	}
	if (p->ap)
		attach_close(p->ap, pm->engine);
	json_decref(p->attrs);
	json_decref(p->hooks);
	/* Only these can match a configuration (see matches()). */
	if (p->state == PROC_OPEN || p->state == PROC_UNSUPPORTED)
		pm->dirty = true;
	free(p->ap);
	free(p);
	vec_remove((void **)pm->procs, &pm->nprocs, index);
}

void pm_process_event(struct probe_manager *pm, pid_t pid, enum discovery_event ev)
{
	size_t index;
	struct proc_entry *p = find_proc(pm, pid, &index);
	uint64_t start_time = 0;

	if (ev == DISCOVERY_GONE || ev == DISCOVERY_EXEC) {
		if (p) {
			/* After exec nothing of the old image is left to revert. */
			proc_drop(pm, index, false);
			p = NULL;
		}
		if (ev == DISCOVERY_GONE)
			return;
	}
	if (proc_read_start_time(pid, &start_time))
		return;
	if (p) {
		p->seen = true;
		if (p->start_time == start_time)
			return;
		proc_drop(pm, index, false);	/* the pid was reused */
	}
	p = calloc(1, sizeof(*p));
	if (!p)
		return;
	p->pid = pid;
	p->start_time = start_time;
	p->state = PROC_CANDIDATE;
	p->seen = true;
	p->check_at_ns = monotonic_ns() + (ev == DISCOVERY_NEW ? 0 : FIRST_LOOK_NS);
	if (VEC_PUSH(pm, procs, p))
		free(p);
	else
		due_at(&pm->procs_due_ns, p->check_at_ns);
}

static const char *api_environment(const struct proc_entry *p)
{
	return p->id.environment[0] ? p->id.environment : UNKNOWN_ENVIRONMENT;
}

static void add_attr(void *ctx, const char *key, const char *value)
{
	json_object_set_new(ctx, key, json_string(value));
}

static bool config_names_pid(struct probe_manager *pm, const struct proc_entry *p)
{
	for (size_t i = 0; i < pm->ncfgs; i++)
		if (pm->cfgs[i]->pc.pid == p->pid && (!pm->cfgs[i]->pid_start_time ||
						       pm->cfgs[i]->pid_start_time == p->start_time))
			return true;
	return false;
}

/* Is it a CPython service we may instrument? Cheap checks first: only a
 * process that names its service (or that a config names by pid) is ours. */
static void look_at(struct probe_manager *pm, struct proc_entry *p)
{
	char err[256];
	int ret;

	if (service_identity_read(p->pid, &p->id)) {
		p->state = PROC_IGNORED;
		return;
	}
	if (!p->id.service_name[0] && !config_names_pid(pm, p)) {
		p->state = PROC_IGNORED;
		return;
	}
	p->ap = calloc(1, sizeof(*p->ap));
	ret = p->ap ? attach_open(p->ap, p->pid, pm->engine, err, sizeof(err)) : -ENOMEM;
	if (ret == -EMEDIUMTYPE) {
		p->state = PROC_UNSUPPORTED;
		snprintf(p->unsupported, sizeof(p->unsupported), "%s", err);
	} else if (ret) {
		if (p->ap)
			attach_close(p->ap, pm->engine);
		free(p->ap);
		p->ap = NULL;
		if (ret == -ENOEXEC && config_names_pid(pm, p)) {
			/* Named by a Pid, not found by its service: whoever
			 * typed the pid hears why nothing will fire. */
			p->state = PROC_UNSUPPORTED;
			snprintf(p->unsupported, sizeof(p->unsupported), "%s", err);
			fprintf(stderr, "pydi agent: %s\n", err);
			pm->dirty = true;
			return;
		}
		if (ret == -ENOEXEC || ret == -ESRCH) {
			p->state = PROC_IGNORED;
			return;
		}
		if (ret == -ENOMEM)
			snprintf(err, sizeof(err), "out of memory");
		/* Maybe still starting up: look again, a few times. */
		if (++p->looks < LOOK_RETRIES) {
			p->check_at_ns = monotonic_ns() + (NS_PER_S << (p->looks - 1));
			return;
		}
		fprintf(stderr, "pydi agent: pid %d: %s\n", p->pid, err);
		p->state = PROC_IGNORED;
		return;
	} else {
		p->state = PROC_OPEN;
	}
	p->id = p->ap->pp.identity;
	p->attrs = json_object();
	resource_attr_foreach(p->id.resource_attrs, add_attr, p->attrs);
	if (p->id.service_name[0])
		json_object_set_new(p->attrs, "service.name", json_string(p->id.service_name));
	if (p->id.environment[0])
		json_object_set_new(p->attrs, "deployment.environment.name",
				    json_string(p->id.environment));
	fprintf(stderr, "pydi agent: pid %d: CPython %d.%d.%d, service \"%s\" environment \"%s\"%s%s\n",
		p->pid, p->ap->pp.version.major, p->ap->pp.version.minor, p->ap->pp.version.micro,
		p->id.service_name,
		p->id.environment, p->state == PROC_UNSUPPORTED ? ": " : "",
		p->state == PROC_UNSUPPORTED ? p->unsupported : "");
	if (pm->o.api && p->id.service_name[0]) {
		di_api_watch(pm->o.api, p->id.service_name, api_environment(p), true);
		p->watching = true;
	}
	pm->dirty = true;
}

/* --- matching ------------------------------------------------------------- */


static bool matches(const struct cfg_entry *c, const struct proc_entry *p)
{
	const struct probe_config *pc = &c->pc;

	if (p->state != PROC_OPEN && p->state != PROC_UNSUPPORTED)
		return false;
	if (c->api)
		return strcmp(c->service, p->id.service_name) == 0 &&
		       strcmp(c->environment, api_environment(p)) == 0 &&
		       probe_config_matches_attrs(pc, p->attrs);
	if (pc->pid && pc->pid != p->pid)
		return false;
	if (pc->pid && c->pid_start_time && c->pid_start_time != p->start_time)
		return false;	/* a later process reusing the pid */
	if (!pc->pid && !p->id.service_name[0])
		return false;
	if (pc->service[0] && strcmp(pc->service, p->id.service_name) != 0)
		return false;
	if (pc->environment[0] && strcmp(pc->environment, p->id.environment) != 0)
		return false;
	return probe_config_matches_attrs(pc, p->attrs);
}

static struct instance *find_inst(struct probe_manager *pm, const struct cfg_entry *c,
				  const struct proc_entry *p)
{
	for (size_t i = 0; i < pm->ninsts; i++)
		if (pm->insts[i]->cfg == c && pm->insts[i]->proc == p)
			return pm->insts[i];
	return NULL;
}

static void reconcile(struct probe_manager *pm)
{
	pm->dirty = false;
	for (size_t i = 0; i < pm->ninsts; i++) {
		struct instance *in = pm->insts[i];

		if (matches(in->cfg, in->proc))
			continue;
		inst_free(pm, in, true);
		vec_remove((void **)pm->insts, &pm->ninsts, i--);
	}
	for (size_t c = 0; c < pm->ncfgs; c++)
		for (size_t p = 0; p < pm->nprocs; p++)
			if (matches(pm->cfgs[c], pm->procs[p]) &&
			    !find_inst(pm, pm->cfgs[c], pm->procs[p])) {
				if (pm->cfgs[c]->pc.pid && !pm->cfgs[c]->pid_start_time)
					pm->cfgs[c]->pid_start_time = pm->procs[p]->start_time;
				inst_new(pm, pm->cfgs[c], pm->procs[p]);
			}
}

/* --- configurations ------------------------------------------------------- */

static void cfg_drop(struct probe_manager *pm, size_t index)
{
	struct cfg_entry *c = pm->cfgs[index];

	for (size_t i = 0; i < pm->ninsts; i++) {
		if (pm->insts[i]->cfg != c)
			continue;
		inst_free(pm, pm->insts[i], true);
		vec_remove((void **)pm->insts, &pm->ninsts, i--);
	}
	probe_config_free(&c->pc);
	free(c);
	vec_remove((void **)pm->cfgs, &pm->ncfgs, index);
	pm->dirty = true;
}

static struct cfg_entry *find_cfg(struct probe_manager *pm, const char *source,
				  const char *scope, const char *id, size_t *index)
{
	for (size_t i = 0; i < pm->ncfgs; i++) {
		struct cfg_entry *c = pm->cfgs[i];

		if (strcmp(c->source, source) == 0 && strcmp(c->scope, scope) == 0 &&
		    (!id || strcmp(c->pc.id, id) == 0)) {
			if (index)
				*index = i;
			return c;
		}
	}
	return NULL;
}

/* Parse and keep one configuration; an unchanged one is only marked. */
static int cfg_put(struct probe_manager *pm, const char *source, const char *scope,
		   const char *service, const char *environment, json_t *config,
		   char *id_out, size_t id_len, char *err, size_t err_len)
{
	struct cfg_entry *c = calloc(1, sizeof(*c)), *old;
	size_t index;
	int ret;

	if (!c)
		return -ENOMEM;
	ret = probe_config_parse(config, &c->pc, err, err_len);
	if (ret) {
		free(c);
		return ret;
	}
	if (id_out)
		snprintf(id_out, id_len, "%s", c->pc.id);
	/* NULL scope: the config is its own scope (the control socket's). */
	if (!scope)
		scope = c->pc.id;
	old = find_cfg(pm, source, scope, c->pc.id, &index);
	if (old && strcmp(old->pc.fingerprint, c->pc.fingerprint) == 0) {
		old->keep = true;
		probe_config_free(&c->pc);
		free(c);
		return 0;
	}
	if (old)
		cfg_drop(pm, index);
	snprintf(c->source, sizeof(c->source), "%s", source);
	snprintf(c->scope, sizeof(c->scope), "%s", scope);
	c->api = strcmp(source, "api") == 0;
	snprintf(c->service, sizeof(c->service), "%s", service ? service : c->pc.service);
	snprintf(c->environment, sizeof(c->environment), "%s",
		 environment ? environment : c->pc.environment);
	c->keep = true;
	/* A Pid names the process running now, not a later one reusing it. */
	if (c->pc.pid && proc_read_start_time(c->pc.pid, &c->pid_start_time))
		c->pid_start_time = 0;
	if (VEC_PUSH(pm, cfgs, c)) {
		probe_config_free(&c->pc);
		free(c);
		return -ENOMEM;
	}
	pm->dirty = true;
	return 0;
}

void pm_set_configs(struct probe_manager *pm, const char *source, const char *scope,
		    const char *service, const char *environment, json_t *configs)
{
	json_t *config;
	size_t i;

	for (i = 0; i < pm->ncfgs; i++)
		if (strcmp(pm->cfgs[i]->source, source) == 0 &&
		    strcmp(pm->cfgs[i]->scope, scope) == 0)
			pm->cfgs[i]->keep = false;
	json_array_foreach(configs, i, config) {
		char err[512];

		if (cfg_put(pm, source, scope, service, environment, config, NULL, 0, err,
			    sizeof(err)))
			fprintf(stderr, "pydi agent: %s config %s #%zu ignored: %s\n", source,
				scope, i, err);
	}
	for (i = 0; i < pm->ncfgs; i++)
		if (strcmp(pm->cfgs[i]->source, source) == 0 &&
		    strcmp(pm->cfgs[i]->scope, scope) == 0 && !pm->cfgs[i]->keep)
			cfg_drop(pm, i--);
}

int pm_add_config(struct probe_manager *pm, json_t *config, char *id_out, size_t id_len,
		  char *err, size_t err_len)
{
	/* The socket's scope is the id: adding it again replaces it. */
	int ret = cfg_put(pm, "socket", NULL, NULL, NULL, config, id_out, id_len, err, err_len);

	if (!ret)
		pm_tick(pm);
	return ret;
}

int pm_del_config(struct probe_manager *pm, const char *id)
{
	size_t index;

	if (!find_cfg(pm, "socket", id, id, &index))
		return -ENOENT;
	cfg_drop(pm, index);
	reconcile(pm);
	return 0;
}

/* --- the periodic work ---------------------------------------------------- */

/*
 * The agent stood still for longer than the lease (SIGSTOP, a CPU-starved
 * cgroup) and the helper reverted every hook: hook them again.
 */
static void check_lease_lapsed(struct probe_manager *pm, struct proc_entry *p)
{
	if (p->ap->hc.state.lease_expiries == p->lease_expiries)
		return;
	p->lease_expiries = p->ap->hc.state.lease_expiries;
	fprintf(stderr, "pydi agent: pid %d: the lease lapsed (the agent stood still for "
		"more than %llu ms) and the helper reverted its hooks: hooking again\n",
		p->pid, (unsigned long long)pm->o.lease_ms);
	for (size_t i = 0; i < pm->ninsts; i++) {
		struct instance *in = pm->insts[i];

		if (in->proc != p || !in->has_slot)
			continue;
		unhook(pm, in);
		hooked_probe_free(&in->hp);
		in->status = IS_PENDING;
		in->attempts = 0;
		in->retry_at_ns = 0;
		in->drain_until_ns = 0;
	}
	due_at(&pm->insts_due_ns, 0);
}

/* p's gates, read once a pass however many of its instances look (with
 * 1,000 probes in a process, one read instead of 1,000). A failed read
 * reads as no hits. */
static const struct pydi_gate *pass_gate(struct proc_entry *p)
{
	static const struct pydi_gate none[PYDI_MAX_GATES];

	if (!p->gates) {
		p->gates = malloc(PYDI_MAX_GATES * sizeof(*p->gates));
		if (!p->gates)
			return none;
		if (attach_read_gates(p->ap, p->gates))
			memset(p->gates, 0, PYDI_MAX_GATES * sizeof(*p->gates));
	}
	return p->gates;
}

static void every_second(struct probe_manager *pm)
{
	bool follow = false;

	for (size_t i = 0; i < pm->nprocs; i++) {
		struct proc_entry *p = pm->procs[i];

		if (!p->ap)
			continue;	/* not opened: see forget_exited() */
		/* A backstop for exit events the ring buffer lost (by its
		 * pidfd: its pid may already name another process). */
		if (!attach_alive(p->ap)) {
			proc_drop(pm, i--, false);
			continue;
		}
		if (!p->injected)
			continue;
		attach_renew_lease(p->ap, pm->o.lease_ms);
		if (helper_read_state(&p->ap->hc))
			continue;
		check_lease_lapsed(pm, p);
		/* 3.11 code ids move only when some pydi hooks or unhooks: ask
		 * the helper for them only then (its "hooks" reply is built
		 * under the target's GIL, ~10 ms with 1,000 hooks). */
		p->hook_changes_now = p->ap->hc.state.hook_changes;
		p->follow_codes = p->hook_changes_now != p->hook_changes_seen;
		follow |= p->follow_codes;
	}
	/* Only a READY instance (its first hit may have been gated) or one
	 * with calls in flight needs a look each second (see pm_tick). */
	if (!follow && !pm->watch_insts)
		return;
	pm->watch_insts = false;
	for (size_t i = 0; i < pm->ninsts; i++) {
		struct instance *in = pm->insts[i];

		if (!in->has_slot)
			continue;
		if (in->proc->follow_codes && in->hp.rekey) {
			/* One "hooks" command per process and pass, not per probe. */
			if (!in->proc->asked_hooks) {
				in->proc->hooks = attach_hooks_by_probe(in->proc->ap);
				in->proc->asked_hooks = true;
			}
			hooked_probe_follow_hooks(in->proc->ap, pm->engine, in->probe_id,
						  &in->hp, in->proc->hooks);
		}
		/* A hit the gate kept from BPF is a hit too. */
		if (in->status == IS_READY && pass_gate(in->proc)[in->hp.slot].hits)
			set_status(pm, in, IS_ACTIVE, NULL, NULL);
		call_pairs_evict(&in->pairs, false, emit_pair, in);
		if (in->status == IS_READY || !call_pairs_empty(&in->pairs))
			pm->watch_insts = true;
	}
	for (size_t i = 0; i < pm->nprocs; i++) {
		struct proc_entry *p = pm->procs[i];

		if (!p->ap)
			continue;
		/* Followed (or nothing to follow): done until the hooks change
		 * again; a failed "hooks" command is asked again next pass. */
		if (p->follow_codes && (p->hooks || !p->asked_hooks))
			p->hook_changes_seen = p->hook_changes_now;
		p->follow_codes = false;
		p->asked_hooks = false;
		json_decref(p->hooks);
		p->hooks = NULL;
		free(p->gates);
		p->gates = NULL;
	}
}

/* A backstop for exit events the ring buffer lost, for the processes not
 * opened (nothing of ours is in them: no hurry). */
static void forget_exited(struct probe_manager *pm)
{
	for (size_t i = 0; i < pm->nprocs; i++) {
		struct proc_entry *p = pm->procs[i];

		if (!p->ap && kill(p->pid, 0) && errno == ESRCH)
			proc_drop(pm, i--, false);
	}
}

/* The next time a look at a candidate process is due (now: out of budget). */
static uint64_t walk_procs(struct probe_manager *pm, uint64_t now, uint64_t budget_end)
{
	uint64_t next = UINT64_MAX;

	for (size_t i = 0; i < pm->nprocs; i++) {
		struct proc_entry *p = pm->procs[i];

		if (p->state != PROC_CANDIDATE)
			continue;
		if (monotonic_ns() >= budget_end)
			return now;
		if (now >= p->check_at_ns)
			look_at(pm, p);
		if (p->state == PROC_CANDIDATE)
			due_at(&next, p->check_at_ns);
	}
	return next;
}

/* The next time an instance needs the walk: a retry, a drain, an expiry. */
static uint64_t walk_insts(struct probe_manager *pm, uint64_t now, uint64_t budget_end)
{
	uint64_t next = UINT64_MAX;

	for (size_t i = 0; i < pm->ninsts; i++) {
		struct instance *in = pm->insts[i];
		int64_t left_ms;

		if (in->status == IS_PENDING && monotonic_ns() >= in->retry_at_ns &&
		    monotonic_ns() < budget_end)
			try_attach(pm, in);
		if (in->has_slot && expired(in->cfg)) {
			unhook(pm, in);
			set_status(pm, in, IS_DISABLED, NULL, "expired (ExpiresAt)");
		}
		check_max_hits(pm, in);
		if (in->status == IS_PENDING)
			due_at(&next, in->retry_at_ns);
		if (in->drain_until_ns)
			due_at(&next, now);	/* the ends of its calls may come any time */
		if (in->has_slot && (left_ms = ms_to_expiry(in->cfg)) != INT64_MAX)
			due_at(&next, now + (uint64_t)(left_ms > 0 ? left_ms : 0) * NS_PER_MS);
	}
	return next;
}

/*
 * Walking the entries touches a page or so per entry, and after the agent's
 * sleep that costs microseconds each (cold caches and TLB, worse in a VM):
 * walked every tick, they were most of an idle agent's CPU. So each walk
 * runs when something in it is due (a candidate's look; a retry, a drain,
 * an expiry, a capture of a MaxHits probe), and every few seconds as a
 * backstop; every_second() looks at the instances only while one needs it.
 */
void pm_tick(struct probe_manager *pm)
{
	uint64_t now = monotonic_ns();
	/* Looking at processes and injecting are the slow part: a burst of new
	 * processes is spread over ticks so that captures, the control socket
	 * and signals are served in between. */
	uint64_t budget_end = now + WORK_BUDGET_NS;

	if (now >= pm->told_ends_due_ns)
		take_told_ends(pm);
	if (now >= pm->procs_due_ns) {
		pm->procs_due_ns = now + WALK_BACKSTOP_NS;
		due_at(&pm->procs_due_ns, walk_procs(pm, now, budget_end));
	}
	if (pm->dirty) {
		reconcile(pm);
		pm->insts_due_ns = 0;	/* new instances are PENDING */
	}
	if (now >= pm->insts_due_ns) {
		pm->insts_walked_ns = now;
		pm->insts_due_ns = now + WALK_BACKSTOP_NS;
		due_at(&pm->insts_due_ns, walk_insts(pm, now, budget_end));
	}
	if (now - pm->last_second_ns >= SECOND_NS) {
		pm->last_second_ns = now;
		every_second(pm);
	}
	if (now - pm->last_gc_ns >= GC_EVERY_NS) {
		pm->last_gc_ns = now;
		forget_exited(pm);
	}
	if (pm->o.sweep_s && now - pm->last_sweep_ns >= pm->o.sweep_s * NS_PER_S) {
		/* The sweep re-sends every status (ACTIVE as a heartbeat); it never
		 * turns a failed configuration READY. */
		pm->last_sweep_ns = now;
		for (size_t i = 0; i < pm->ninsts; i++)
			report(pm, pm->insts[i]);
	}
}

/* When pm_tick() next has work (every_second() included), monotonic ns. */
uint64_t pm_next_due_ns(const struct probe_manager *pm)
{
	uint64_t next = pm->last_second_ns + SECOND_NS;

	due_at(&next, pm->procs_due_ns);
	due_at(&next, pm->insts_due_ns);
	due_at(&next, pm->told_ends_due_ns);
	return pm->dirty ? 0 : next;
}

int pm_engine_fd(struct probe_manager *pm)
{
	return probe_engine_fd(pm->engine);
}

void pm_engine_consume(struct probe_manager *pm)
{
	probe_engine_poll(pm->engine, 0);
	if (pm->told_ends_due_ns != UINT64_MAX)
		take_told_ends(pm);
}

/* --- listing and metrics -------------------------------------------------- */

static json_t *inst_json(struct probe_manager *pm, struct instance *in)
{
	const struct pyprobe_stats *st = &in->stats;
	const struct pydi_gate *gate = &in->gate;
	json_t *j;

	read_counters(pm, in);
	j = json_pack("{s:i,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:{s:I,s:I,s:I}}",
		      "pid", in->proc->pid, "service", in->proc->id.service_name,
		      "environment", in->proc->id.environment,
		      "status", status_names[in->status],
		      "calls", (json_int_t)gate->hits, "gated", (json_int_t)gate->skipped,
		      "hits", (json_int_t)(gate->hits ? gate->hits : st->hits),
		      "snapshots", (json_int_t)in->snapshots,
		      "drops", "rate", (json_int_t)(st->drop_rate + gate->skipped),
		      "max_hits", (json_int_t)st->drop_max_hits,
		      "ringbuf", (json_int_t)st->drop_ringbuf);
	if (in->cause[0])
		json_object_set_new(j, "error_cause", json_string(in->cause));
	if (in->message[0])
		json_object_set_new(j, "message", json_string(in->message));
	if (in->hp.routes)
		json_object_set(j, "routes", in->hp.routes);
	if (in->has_slot)
		json_object_set_new(j, "warnings", hooked_probe_warnings(&in->hp));
	return j;
}

json_t *pm_list(struct probe_manager *pm)
{
	json_t *probes = json_array();

	for (size_t c = 0; c < pm->ncfgs; c++) {
		struct cfg_entry *cfg = pm->cfgs[c];
		json_t *procs = json_array(), *j;
		char target[800];

		probe_config_target(&cfg->pc, target, sizeof(target));
		for (size_t i = 0; i < pm->ninsts; i++)
			if (pm->insts[i]->cfg == cfg)
				json_array_append_new(procs, inst_json(pm, pm->insts[i]));
		j = json_pack("{s:s,s:s,s:s,s:s,s:s,s:o}", "id", cfg->pc.id, "source", cfg->source,
			      "type", probe_kind_name(cfg->pc.kind), "target", target,
			      "fingerprint", cfg->pc.fingerprint, "processes", procs);
		if (cfg->service[0])
			json_object_set_new(j, "service", json_string(cfg->service));
		if (cfg->environment[0])
			json_object_set_new(j, "environment", json_string(cfg->environment));
		json_array_append_new(probes, j);
	}
	return json_pack("{s:o}", "probes", probes);
}

void pm_metrics(struct probe_manager *pm, FILE *out)
{
	unsigned int by_status[IS_ERROR + 1] = { 0 };
	unsigned int by_state[PROC_UNSUPPORTED + 1] = { 0 };
	uint64_t hits = 0, rate = 0, max_hits = 0, ringbuf = 0;

	for (size_t i = 0; i < pm->ninsts; i++) {
		struct instance *in = pm->insts[i];

		by_status[in->status]++;
		read_counters(pm, in);
		rate += in->stats.drop_rate + in->gate.skipped;
		max_hits += in->stats.drop_max_hits;
		ringbuf += in->stats.drop_ringbuf;
		hits += in->gate.hits ? in->gate.hits : in->stats.hits;
	}
	for (size_t i = 0; i < pm->nprocs; i++)
		by_state[pm->procs[i]->state]++;
	fprintf(out, "# HELP pydi_probes Probe instances (configuration x process) by status.\n"
		"# TYPE pydi_probes gauge\n");
	for (int s = IS_PENDING; s <= IS_ERROR; s++)
		fprintf(out, "pydi_probes{status=\"%s\"} %u\n", status_names[s], by_status[s]);
	fprintf(out, "# HELP pydi_processes Processes the agent knows, by state.\n"
		"# TYPE pydi_processes gauge\n"
		"pydi_processes{state=\"instrumentable\"} %u\n"
		"pydi_processes{state=\"unsupported\"} %u\n"
		"pydi_processes{state=\"ignored\"} %u\n",
		by_state[PROC_OPEN], by_state[PROC_UNSUPPORTED], by_state[PROC_IGNORED]);
	fprintf(out, "# HELP pydi_probe_hits_total Calls of probed code that reached a probe.\n"
		"# TYPE pydi_probe_hits_total counter\npydi_probe_hits_total %llu\n",
		(unsigned long long)hits);
	fprintf(out, "# HELP pydi_capture_drops_total Hits not captured, by reason.\n"
		"# TYPE pydi_capture_drops_total counter\n"
		"pydi_capture_drops_total{reason=\"rate\"} %llu\n"
		"pydi_capture_drops_total{reason=\"max_hits\"} %llu\n"
		"pydi_capture_drops_total{reason=\"ringbuf\"} %llu\n"
		"pydi_capture_drops_total{reason=\"export_queue\"} %llu\n",
		(unsigned long long)rate, (unsigned long long)max_hits,
		(unsigned long long)ringbuf, (unsigned long long)pm->snapshots_dropped);
	fprintf(out, "# HELP pydi_injection_failures_total Helper injections that failed.\n"
		"# TYPE pydi_injection_failures_total counter\n"
		"pydi_injection_failures_total %llu\n",
		(unsigned long long)pm->injection_failures);
	fprintf(out, "# HELP pydi_call_ends_lost_total Call ends a helper told that were "
		"overwritten before the agent read them (their snapshots lack a duration).\n"
		"# TYPE pydi_call_ends_lost_total counter\n"
		"pydi_call_ends_lost_total %llu\n", (unsigned long long)pm->told_ends_lost);
}

/* --- open and close ------------------------------------------------------- */

int pm_open(struct probe_manager **out, const struct pm_opts *o, char *err,
	    size_t err_len)
{
	struct probe_manager *pm = calloc(1, sizeof(*pm));
	int ret;

	if (!pm)
		return -ENOMEM;
	pm->o = *o;
	pm->failed = json_object();
	pm->last_sweep_ns = monotonic_ns();
	pm->told_ends_due_ns = UINT64_MAX;
	ret = probe_engine_open(&pm->engine, o->ringbuf_bytes, false, on_capture, pm,
				err, err_len);
	if (ret) {
		json_decref(pm->failed);
		free(pm);
		return ret;
	}
	*out = pm;
	return 0;
}

void pm_close(struct probe_manager *pm)
{
	if (!pm)
		return;
	probe_engine_drain(pm->engine, (int)(DRAIN_NS / NS_PER_MS));
	while (pm->nprocs)
		proc_drop(pm, pm->nprocs - 1, true);
	while (pm->ncfgs) {
		probe_config_free(&pm->cfgs[pm->ncfgs - 1]->pc);
		free(pm->cfgs[--pm->ncfgs]);
	}
	free(pm->procs);
	free(pm->cfgs);
	free(pm->insts);
	json_decref(pm->failed);
	probe_engine_close(pm->engine);
	free(pm);
}
