// SPDX-License-Identifier: MIT
/*
 * pydi trace -p PID TARGET: one ad-hoc probe on one process, no daemon.
 * Load the helper (once), hook the code, match and capture in BPF, print
 * statuses and snapshots, and revert everything on the way out.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "inject.h"
#include "memresolve.h"
#include "main.h"
#include "probe_engine.h"
#include "ptrace_call.h"
#include "pyproc.h"
#include "snapshot.h"

#define LEASE_MS		5000	/* hooks revert this long after we vanish */
#define LEASE_RENEW_MS		1000
#define COMMAND_TIMEOUT_MS	10000
#define POLL_MS			100
#define PENDING_MAX		256	/* entries waiting for their return */
#define PENDING_EVICT_NS	(30ull * 1000000000ull)
#define DEFAULT_MAX_HITS	100	/* BREAKPOINT default, as ADOT */
#define DEFAULT_RATE		5.0	/* snapshots per second */
#define RINGBUF_BYTES		(4u << 20)

static volatile sig_atomic_t exiting;

static struct trace_env {
	int pid;
	const char *target;
	unsigned int capture;
	bool capture_given;
	long max_hits;			/* -1: default */
	double rate;			/* <= 0: unlimited */
	long count;			/* 0: unlimited */
	double timeout;			/* 0: none */
	struct snapshot_limits limits;
	bool no_inject;
	const char *redact;		/* extra identifiers, comma-separated */
} env = {
	.max_hits = -1,
	.rate = DEFAULT_RATE,
	.limits = { .max_string = 255, .max_width = 20, .max_depth = 3,
		    .max_fields = 20, .max_frames = 20 },
};

struct pending {
	struct pyprobe_capture *cap;
	size_t size;
};

struct trace {
	struct pyproc pp;
	struct helper_client hc;
	struct probe_engine *engine;
	struct snapshot_target target;
	struct snapshot_probe probe;
	struct redactor redactor;
	char probe_id[32];
	uint32_t slot;
	json_t *codes;			/* hook reply codes */
	json_t *keys;			/* BPF keys set, for removal */
	json_t *routes;			/* framework routes that reach the code */
	bool hooked;
	bool rekey;			/* 3.11: other probes may swap our code */
	bool active;
	bool disabled;
	long snapshots;
	struct pending pending[PENDING_MAX];
	char module[256];
	char qualname[512];
	char file[1024];
	struct pyprobe_config cfg;
};

static void on_signal(int sig)
{
	(void)sig;
	exiting = 1;
}

/* --- output ------------------------------------------------------------ */

static void emit_status(struct trace *tr, const char *status, const char *cause,
			const char *message, json_t *extra)
{
	json_t *j = json_pack("{s:s,s:s,s:i,s:s,s:s}", "type", "status", "probe",
			      tr->probe_id, "pid", env.pid, "target", env.target,
			      "status", status);

	if (cause)
		json_object_set_new(j, "error_cause", json_string(cause));
	if (message)
		json_object_set_new(j, "message", json_string(message));
	if (extra)
		json_object_update(j, extra);
	if (json_output) {
		json_print(j);
	} else {
		json_t *w;
		size_t i;

		printf("pydi: probe %s on pid %d: %s%s%s%s%s\n", tr->probe_id, env.pid,
		       status, cause ? " " : "", cause ? cause : "",
		       message ? ": " : "", message ? message : "");
		json_array_foreach(json_object_get(j, "warnings"), i, w)
			printf("pydi:   warning: %s\n", json_string_value(w));
		fflush(stdout);
	}
	json_decref(j);
}

static void print_value(const json_t *v, int indent);

static void print_vars(const char *title, const json_t *vars, int indent)
{
	const char *name;
	json_t *v;

	if (!vars)
		return;
	printf("%*s%s:\n", indent, "", title);
	json_object_foreach((json_t *)vars, name, v) {
		printf("%*s%s = ", indent + 2, "", name);
		print_value(v, indent + 4);
		printf("\n");
	}
}

static void print_value(const json_t *v, int indent)
{
	const json_t *val = json_object_get(v, "value");
	const char *type = json_string_value(json_object_get(v, "type"));
	json_t *items;
	size_t i;

	(void)indent;
	if (json_object_get(v, "not_captured_reason")) {
		printf("<%s: %s>", type, json_string_value(json_object_get(v, "not_captured_reason")));
	} else if (json_object_get(v, "is_null")) {
		printf("None");
	} else if (val) {
		if (type && strcmp(type, "str") == 0)
			printf("'%s'", json_string_value(val));
		else
			printf("%s", json_string_value(val));
	} else if ((items = json_object_get(v, "elements"))) {
		json_t *e;

		printf("%s[", type);
		json_array_foreach(items, i, e) {
			printf(i ? ", " : "");
			print_value(e, indent);
		}
		printf("]");
	} else if ((items = json_object_get(v, "entries"))) {
		json_t *e;

		printf("{");
		json_array_foreach(items, i, e) {
			printf(i ? ", " : "");
			print_value(json_object_get(e, "key"), indent);
			printf(": ");
			print_value(json_object_get(e, "value"), indent);
		}
		printf("}");
	} else if ((items = json_object_get(v, "fields"))) {
		const char *k;
		json_t *e;
		bool first = true;

		printf("%s(", type);
		json_object_foreach(items, k, e) {
			printf("%s%s=", first ? "" : ", ", k);
			print_value(e, indent);
			first = false;
		}
		printf(")");
	}
	if (json_is_true(json_object_get(v, "truncated")))
		printf("…(%lld)", (long long)json_integer_value(json_object_get(v, "size")));
}

static void emit_snapshot(struct trace *tr, json_t *snap)
{
	json_t *captures = json_object_get(snap, "captures"), *stack, *f;
	size_t i;

	json_object_set_new(snap, "type", json_string("snapshot"));
	json_object_set_new(snap, "probe", json_string(tr->probe_id));
	json_object_set_new(snap, "pid", json_integer(env.pid));
	if (json_output) {
		json_print(snap);
		return;
	}
	printf("snapshot %s  %s:%s  pid %d thread %lld\n",
	       json_string_value(json_object_get(snap, "id")), tr->module, tr->qualname,
	       env.pid, (long long)json_integer_value(json_object_get(
		       json_object_get(snap, "thread"), "id")));
	print_vars("arguments", json_object_get(json_object_get(captures, "entry"),
						"arguments"), 2);
	if (json_object_get(captures, "lines")) {
		const char *line;
		json_t *ctx;

		json_object_foreach(json_object_get(captures, "lines"), line, ctx) {
			char title[32];

			snprintf(title, sizeof(title), "locals at line %s", line);
			print_vars(title, json_object_get(ctx, "locals"), 2);
		}
	}
	{
		json_t *ret = json_object_get(captures, "return");
		json_t *rv = json_object_get(ret, "return_value");
		json_t *th = json_object_get(ret, "throwable");

		if (rv) {
			printf("  return = ");
			print_value(rv, 4);
			printf("\n");
		}
		if (th)
			printf("  raised %s: %s\n", json_string_value(json_object_get(th, "type")),
			       json_string_value(json_object_get(th, "message")));
	}
	stack = json_object_get(snap, "stack");
	if (stack) {
		printf("  stack:\n");
		json_array_foreach(stack, i, f)
			printf("    %s (%s:%lld)\n", json_string_value(json_object_get(f, "function")),
			       json_string_value(json_object_get(f, "file_path")),
			       (long long)json_integer_value(json_object_get(f, "line_number")));
	}
	fflush(stdout);
}

/* --- helper commands --------------------------------------------------- */

static json_t *command(struct trace *tr, json_t *cmd, char *err, size_t err_len)
{
	char *text = json_dumps(cmd, JSON_COMPACT), *reply = NULL;
	json_error_t jerr;
	json_t *parsed;
	int ret;

	json_decref(cmd);
	if (!text) {
		snprintf(err, err_len, "out of memory");
		return NULL;
	}
	ret = helper_command(&tr->hc, text, &reply, COMMAND_TIMEOUT_MS);
	free(text);
	if (ret) {
		snprintf(err, err_len, "pid %d: helper command failed: %s", env.pid,
			 strerror(-ret));
		return NULL;
	}
	parsed = json_loads(reply, 0, &jerr);
	free(reply);
	if (!parsed)
		snprintf(err, err_len, "pid %d: helper sent invalid JSON: %s", env.pid, jerr.text);
	return parsed;
}

static uint64_t gate_addr(const struct trace *tr)
{
	return tr->hc.state.gates + (uint64_t)tr->slot * sizeof(struct pydi_gate);
}

/* Arm or disarm the helper's gate for our slot; next_allowed_ns keeps
 * rate-limited calls away from the uprobe trap. */
static void set_gate(struct trace *tr, bool armed, uint64_t next_allowed_ns)
{
	struct pydi_gate gate;
	struct proc_mem pm;

	if (!tr->hc.state.gates)
		return;
	proc_mem_init(&pm, env.pid);
	if (proc_mem_read(&pm, gate_addr(tr), &gate, sizeof(gate)) == 0) {
		gate.armed = armed;
		gate.next_allowed_ns = next_allowed_ns;
		pt_write_mem(env.pid, gate_addr(tr), &gate,
			     offsetof(struct pydi_gate, hits));
	}
	proc_mem_close(&pm);
}

/*
 * Tell the helper where a thread state keeps its running frame, so its
 * gate can pair call ends with the starts it let through (a rate-limited
 * call then pays no trap at either end).
 */
static void tell_frame_offsets(struct trace *tr)
{
	const struct py_offsets *o = &tr->pp.offsets;
	uint64_t where[3] = {
		o->tstate_cframe == PY_OFF_NONE ? UINT64_MAX : o->tstate_cframe,
		o->cframe_current_frame, o->tstate_current_frame,
	};
	uint64_t known = 1;

	if (pt_write_mem(env.pid, tr->hc.state_addr +
			 offsetof(struct pydi_helper_state, tstate_cframe),
			 where, sizeof(where)) == 0)
		pt_write_mem(env.pid, tr->hc.state_addr +
			     offsetof(struct pydi_helper_state, frame_known),
			     &known, sizeof(known));
}

/* A free gate slot: random start, first one not armed. */
static int pick_slot(struct trace *tr)
{
	struct proc_mem pm;
	uint32_t start;

	if (getrandom(&start, sizeof(start), 0) != sizeof(start))
		start = (uint32_t)getpid();
	proc_mem_init(&pm, env.pid);
	for (uint32_t i = 0; i < PYDI_MAX_GATES; i++) {
		uint32_t slot = (start + i) % PYDI_MAX_GATES;
		struct pydi_gate gate;

		if (!tr->hc.state.gates ||
		    (proc_mem_read(&pm, tr->hc.state.gates + (uint64_t)slot * sizeof(gate),
				   &gate, sizeof(gate)) == 0 && !gate.armed)) {
			tr->slot = slot;
			proc_mem_close(&pm);
			/* A reused slot starts from zero: its counters are ours. */
			if (tr->hc.state.gates) {
				memset(&gate, 0, sizeof(gate));
				pt_write_mem(env.pid, gate_addr(tr), &gate, sizeof(gate));
			}
			return 0;
		}
	}
	proc_mem_close(&pm);
	return -ENOSPC;
}

/* --- capture pairing ----------------------------------------------------- */

/* --count N prints exactly N: one ring-buffer poll may bring more. */
static bool count_reached(const struct trace *tr)
{
	return env.count && tr->snapshots >= env.count;
}

static void flush_pending(struct trace *tr, size_t i, const struct pyprobe_capture *ret,
			  size_t ret_size)
{
	json_t *snap = count_reached(tr) ? NULL :
		snapshot_build(&tr->target, &tr->probe, tr->pending[i].cap,
			       tr->pending[i].size, ret, ret_size);

	free(tr->pending[i].cap);
	tr->pending[i].cap = NULL;
	if (!snap)
		return;
	emit_snapshot(tr, snap);
	json_decref(snap);
	tr->snapshots++;
}

static void evict_stale(struct trace *tr, bool all)
{
	uint64_t now = monotonic_ns();

	for (size_t i = 0; i < PENDING_MAX; i++)
		if (tr->pending[i].cap &&
		    (all || now - tr->pending[i].cap->ts_ns > PENDING_EVICT_NS))
			flush_pending(tr, i, NULL, 0);
}

static int on_capture(void *ctx, const struct pyprobe_capture *cap, size_t size)
{
	struct trace *tr = ctx;
	struct pyprobe_stats st;

	if (cap->slot != tr->slot || cap->tgid != (uint32_t)env.pid || count_reached(tr))
		return 0;
	if (!tr->active) {
		tr->active = true;
		emit_status(tr, "ACTIVE", NULL, NULL, NULL);
	}
	if (cap->event == PYPROBE_EV_LINE ||
	    (cap->event == PYPROBE_EV_ENTRY && !tr->cfg.pairs_return)) {
		json_t *snap = snapshot_build(&tr->target, &tr->probe, cap, size, NULL, 0);

		if (snap) {
			emit_snapshot(tr, snap);
			json_decref(snap);
			tr->snapshots++;
		}
	} else if (cap->event == PYPROBE_EV_ENTRY) {
		size_t free_at = PENDING_MAX;

		for (size_t i = 0; i < PENDING_MAX; i++)
			if (!tr->pending[i].cap) {
				free_at = i;
				break;
			}
		if (free_at == PENDING_MAX) {
			/* Too many calls in flight: the oldest goes out alone. */
			flush_pending(tr, 0, NULL, 0);
			free_at = 0;
		}
		tr->pending[free_at].cap = malloc(size);
		if (tr->pending[free_at].cap) {
			memcpy(tr->pending[free_at].cap, cap, size);
			tr->pending[free_at].size = size;
		}
	} else {
		for (size_t i = 0; i < PENDING_MAX; i++)
			if (tr->pending[i].cap && tr->pending[i].cap->frame == cap->frame &&
			    tr->pending[i].cap->tid == cap->tid) {
				flush_pending(tr, i, cap, size);
				break;
			}
	}
	/* Keep the gate's idea of the next allowed time current. */
	if (tr->cfg.rate_interval_ns && probe_engine_stats(tr->engine, tr->slot, &st) == 0 &&
	    st.tat_ns > tr->cfg.rate_burst_ns)
		set_gate(tr, true, st.tat_ns - tr->cfg.rate_burst_ns);
	return 0;
}

/* --- setting the probe up ------------------------------------------------ */

static int parse_capture(const char *arg)
{
	char *copy = strdup(arg), *tok, *save = NULL;
	int ret = 0;

	env.capture = 0;
	env.capture_given = true;
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (strcmp(tok, "args") == 0 || strcmp(tok, "arguments") == 0)
			env.capture |= PYPROBE_CAPTURE_ARGS;
		else if (strcmp(tok, "locals") == 0)
			env.capture |= PYPROBE_CAPTURE_LOCALS;
		else if (strcmp(tok, "return") == 0)
			env.capture |= PYPROBE_CAPTURE_RETURN;
		else if (strcmp(tok, "stack") == 0)
			env.capture |= PYPROBE_CAPTURE_STACK;
		else
			ret = -EINVAL;
	}
	free(copy);
	return ret;
}

static int parse_limits(const char *arg)
{
	char *copy = strdup(arg), *tok, *save = NULL;
	int ret = 0;

	for (tok = strtok_r(copy, ",", &save); tok && !ret; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '='), *end;
		long v;

		if (!eq) {
			ret = -EINVAL;
			break;
		}
		*eq = '\0';
		v = strtol(eq + 1, &end, 10);
		if (*end || v < 0 || v > 1000000) {
			ret = -EINVAL;
			break;
		}
		if (strcmp(tok, "string") == 0)
			env.limits.max_string = v > PYPROBE_STR_MAX ? PYPROBE_STR_MAX : v;
		else if (strcmp(tok, "collection") == 0)
			env.limits.max_width = v > PYPROBE_WIDTH_MAX ? PYPROBE_WIDTH_MAX : v;
		else if (strcmp(tok, "depth") == 0)
			env.limits.max_depth = v > 8 ? 8 : v;
		else if (strcmp(tok, "fields") == 0)
			env.limits.max_fields = v > PYPROBE_WIDTH_MAX ? PYPROBE_WIDTH_MAX : v;
		else if (strcmp(tok, "frames") == 0)
			env.limits.max_frames = v > PYPROBE_MAX_FRAMES ? PYPROBE_MAX_FRAMES : v;
		else
			ret = -EINVAL;
	}
	free(copy);
	return ret;
}

static bool is_line_target(const char *target)
{
	const char *colon = strrchr(target, ':');

	return strchr(target, '@') || (colon && strstr(target, ".py:"));
}

/* ceil() without libm (a Debug build does not inline it). */
static uint64_t rate_ceil(double rate)
{
	uint64_t whole = (uint64_t)rate;

	return (double)whole < rate ? whole + 1 : whole;
}

static void fill_config(struct trace *tr, const struct pycode_info *ci, bool line_probe)
{
	struct pyprobe_config *c = &tr->cfg;
	uint64_t cells = 0;

	memset(c, 0, sizeof(*c));
	c->slot = tr->slot;
	c->capture = env.capture;
	c->nvars = ci ? (uint32_t)(ci->nlocalsplus < PYPROBE_MAX_VARS ? ci->nlocalsplus :
				   PYPROBE_MAX_VARS) : 0;
	for (size_t i = 0; ci && i < ci->nlocalsplus && i < 64; i++)
		if (ci->localsplus_kinds[i] & (CO_FAST_CELL | CO_FAST_FREE))
			cells |= 1ull << i;
	c->cell_mask = cells;
	c->max_hits = env.max_hits < 0 ? DEFAULT_MAX_HITS : (uint32_t)env.max_hits;
	if (env.rate > 0) {
		c->rate_interval_ns = (uint64_t)(1e9 / env.rate);
		/* A second's worth of burst, as a token bucket of size rate. */
		c->rate_burst_ns = env.rate >= 1 ?
			(rate_ceil(env.rate) - 1) * c->rate_interval_ns : 0;
	}
	c->max_string = env.limits.max_string;
	c->max_width = env.limits.max_width;
	c->max_depth = env.limits.max_depth;
	c->max_fields = env.limits.max_fields;
	c->max_frames = env.limits.max_frames;
	c->max_objs = PYPROBE_MAX_OBJS;
	c->pairs_return = !line_probe;
}

static int set_keys(struct trace *tr, bool line_probe)
{
	static const uint32_t fn_events[] = { PYPROBE_EV_ENTRY, PYPROBE_EV_RETURN,
					      PYPROBE_EV_EXCEPTION };
	json_t *code;
	size_t i;

	tr->keys = json_array();
	json_array_foreach(tr->codes, i, code) {
		uint64_t code_id = (uint64_t)json_integer_value(json_object_get(code, "code_id"));
		int64_t line = json_integer_value(json_object_get(code, "line"));
		const struct pycode_info *ci = code_cache_get(&tr->target.codes, code_id);

		fill_config(tr, ci, line_probe);
		for (size_t e = 0; e < (line_probe ? 1 : 3); e++) {
			struct pyprobe_key key = {
				.tgid = (uint32_t)env.pid,
				.event = line_probe ? PYPROBE_EV_LINE : fn_events[e],
				.code = code_id,
				.line = line_probe ? line : 0,
			};
			int ret = probe_engine_set_probe(tr->engine, &key, &tr->cfg);

			if (ret)
				return ret;
			json_array_append_new(tr->keys, json_pack("[I,i,I]",
					      (json_int_t)code_id, key.event, (json_int_t)key.line));
		}
	}
	return 0;
}

static void remove_keys(struct trace *tr)
{
	json_t *k;
	size_t i;

	json_array_foreach(tr->keys, i, k) {
		struct pyprobe_key key = {
			.tgid = (uint32_t)env.pid,
			.code = (uint64_t)json_integer_value(json_array_get(k, 0)),
			.event = (uint32_t)json_integer_value(json_array_get(k, 1)),
			.line = json_integer_value(json_array_get(k, 2)),
		};

		probe_engine_del_probe(tr->engine, &key);
	}
}

static void revert(struct trace *tr)
{
	char err[256];
	json_t *reply;

	set_gate(tr, false, 0);
	if (tr->keys)
		remove_keys(tr);
	if (tr->hooked) {
		reply = command(tr, json_pack("{s:s,s:s}", "cmd", "unhook", "probe_id",
					      tr->probe_id), err, sizeof(err));
		if (!reply)
			p_info("warning: %s (the lease reverts the hooks within %d s)", err,
			       LEASE_MS / 1000);
		json_decref(reply);
		tr->hooked = false;
	}
	helper_set_lease(&tr->hc, 0);
}

/* Hook the target; on a probe error print the status: exit code or 0. */
static int hook(struct trace *tr, bool line_probe)
{
	char err[512];
	json_t *reply, *events;

	events = line_probe ? json_pack("[s]", "line") :
			      json_pack("[s,s,s]", "entry", "return", "exception");
	reply = command(tr, json_pack("{s:s,s:s,s:i,s:s,s:o}", "cmd", "hook", "probe_id",
				      tr->probe_id, "slot", tr->slot, "target", env.target,
				      "events", events), err, sizeof(err));
	if (!reply) {
		emit_status(tr, "ERROR", "RUNTIME_ERROR", err, NULL);
		return EXIT_CANNOT_ATTACH;
	}
	if (!json_is_true(json_object_get(reply, "ok"))) {
		const char *cause = json_string_value(json_object_get(reply, "error_cause"));

		emit_status(tr, "ERROR", cause ? cause : "RUNTIME_ERROR",
			    json_string_value(json_object_get(reply, "message")), NULL);
		json_decref(reply);
		return EXIT_PROBE_ERROR;
	}
	tr->hooked = true;
	tr->rekey = json_is_string(json_object_get(reply, "mechanism")) &&
		    strcmp(json_string_value(json_object_get(reply, "mechanism")),
			   "bytecode") == 0;
	tr->codes = json_incref(json_object_get(reply, "codes"));
	tr->routes = json_incref(json_object_get(reply, "routes"));
	snprintf(tr->module, sizeof(tr->module), "%s",
		 json_string_value(json_object_get(reply, "module")) ?: "");
	snprintf(tr->qualname, sizeof(tr->qualname), "%s",
		 json_string_value(json_object_get(reply, "object")) ?: "");
	if (json_array_size(tr->codes))
		snprintf(tr->file, sizeof(tr->file), "%s", json_string_value(json_object_get(
			 json_array_get(tr->codes, 0), "file")) ?: "");
	json_decref(reply);
	if (json_array_size(tr->codes) == 0) {
		emit_status(tr, "ERROR", line_probe ? "LINE_NOT_EXECUTABLE" : "METHOD_NOT_FOUND",
			    "the target has no Python code to hook", NULL);
		return EXIT_PROBE_ERROR;
	}
	return 0;
}

/* The hook's warnings (e.g. 3.11 frames still running the old code, which
 * the hook cannot reach) gathered for the READY status. */
static json_t *code_warnings(json_t *codes)
{
	json_t *all = json_array(), *code, *w;
	size_t i, j;

	json_array_foreach(codes, i, code)
		json_array_foreach(json_object_get(code, "warnings"), j, w)
			if (json_is_string(w))
				json_array_append(all, w);
	return all;
}

static void fill_probe(struct trace *tr, bool line_probe)
{
	tr->probe.probe_id = tr->probe_id;
	tr->probe.instrumentation_type = "BREAKPOINT";
	tr->probe.module = tr->module;
	tr->probe.qualname = tr->qualname;
	tr->probe.file_path = tr->file[0] ? tr->file : NULL;
	tr->probe.line = line_probe ? (int)json_integer_value(json_object_get(
		json_array_get(tr->codes, 0), "line")) : 0;
	tr->probe.capture_args = env.capture & PYPROBE_CAPTURE_ARGS;
	tr->probe.capture_locals = env.capture & PYPROBE_CAPTURE_LOCALS;
	tr->probe.capture_return = env.capture & PYPROBE_CAPTURE_RETURN;
	tr->probe.capture_stack = env.capture & PYPROBE_CAPTURE_STACK;
	tr->probe.limits = env.limits;
	tr->probe.redactor = &tr->redactor;
}

static int poll_loop(struct trace *tr, uint64_t start, bool renew_lease);

/*
 * --no-inject: nothing runs in the target. A uprobe on the interpreter's
 * _PyEval_EvalFrameDefault sees only frames entered from C (3.11+ inlines
 * Python-to-Python calls), so a probe may never fire: READY says so.
 */
static int run_no_inject(struct trace *tr, bool line_probe)
{
	char err[512];
	uint64_t code;
	const struct pycode_info *ci;
	json_t *extra;
	int ret;

	if (line_probe) {
		emit_status(tr, "ERROR", "LINE_NOT_EXECUTABLE",
			    "line probes need the helper's hooks: drop --no-inject", NULL);
		return EXIT_PROBE_ERROR;
	}
	ret = memresolve_code(&tr->pp, env.target, &code, err, sizeof(err));
	if (ret) {
		emit_status(tr, "ERROR", ret == -EINVAL ? "RUNTIME_ERROR" :
			    strstr(err, "not loaded") ? "FILE_NOT_FOUND" : "METHOD_NOT_FOUND",
			    err, NULL);
		return EXIT_PROBE_ERROR;
	}
	if (probe_engine_attach_eval_frame(tr->engine, &tr->pp, err, sizeof(err))) {
		emit_status(tr, "ERROR", "RUNTIME_ERROR", err, NULL);
		return EXIT_CANNOT_ATTACH;
	}
	ci = code_cache_get(&tr->target.codes, code);
	tr->slot = 0;
	probe_engine_reset_stats(tr->engine, tr->slot);
	fill_config(tr, ci, false);
	/* At eval-frame entry no cell exists yet: arguments are plain. */
	tr->cfg.cell_mask = 0;
	tr->cfg.pairs_return = 0;
	{
		struct pyprobe_key key = { .tgid = (uint32_t)env.pid, .event = PYPROBE_EV_ENTRY,
					   .code = code };

		ret = probe_engine_set_probe(tr->engine, &key, &tr->cfg);
		tr->keys = json_pack("[[I,i,i]]", (json_int_t)code, PYPROBE_EV_ENTRY, 0);
	}
	if (ret) {
		emit_status(tr, "ERROR", "RUNTIME_ERROR", "updating the probe map failed", NULL);
		return EXIT_CANNOT_ATTACH;
	}
	snprintf(tr->module, sizeof(tr->module), "%.*s",
		 (int)(strchr(env.target, ':') - env.target), env.target);
	snprintf(tr->qualname, sizeof(tr->qualname), "%s", strchr(env.target, ':') + 1);
	if (ci)
		snprintf(tr->file, sizeof(tr->file), "%s", ci->filename);
	tr->codes = json_pack("[{s:I}]", "code_id", (json_int_t)code);
	fill_probe(tr, false);
	tr->probe.capture_return = false;
	extra = json_pack("{s:s,s:[s]}", "coverage", "c-entered-frames", "warnings",
			  "--no-inject sees only frames entered from C (callbacks, map(), "
			  "threads, framework dispatch); calls made from Python code are "
			  "invisible, and return values are not captured");
	emit_status(tr, "READY", NULL, NULL, extra);
	json_decref(extra);
	return poll_loop(tr, monotonic_ns(), false);
}

static int run(struct trace *tr)
{
	bool line_probe = is_line_target(env.target);
	uint64_t start = monotonic_ns();
	struct inject_result res;
	char err[512];
	json_t *extra;
	int ret;

	snprintf(tr->probe_id, sizeof(tr->probe_id), "trace-%d", getpid());
	if (pyproc_open(env.pid, &tr->pp, err, sizeof(err))) {
		emit_status(tr, "ERROR", "RUNTIME_ERROR", err, NULL);
		return EXIT_CANNOT_ATTACH;
	}
	if (!tr->pp.instrumentable) {
		snprintf(err, sizeof(err), "pid %d: %s", env.pid, tr->pp.reason);
		emit_status(tr, "ERROR", "LANGUAGE_MISMATCH", err, NULL);
		return EXIT_CANNOT_ATTACH;
	}
	snapshot_target_init(&tr->target, &tr->pp, 0);
	ret = probe_engine_open(&tr->engine, RINGBUF_BYTES, on_capture, tr, err, sizeof(err));
	if (!ret)
		ret = probe_engine_add_process(tr->engine, &tr->pp, err, sizeof(err));
	if (ret) {
		emit_status(tr, "ERROR", "RUNTIME_ERROR", err, NULL);
		return EXIT_CANNOT_ATTACH;
	}
	if (env.no_inject)
		return run_no_inject(tr, line_probe);
	if (inject_helper(&tr->pp, &tr->hc, &res, err, sizeof(err))) {
		emit_status(tr, "ERROR", "RUNTIME_ERROR", err, NULL);
		return EXIT_CANNOT_ATTACH;
	}
	if (probe_engine_attach_hook(tr->engine, &tr->hc, err, sizeof(err))) {
		emit_status(tr, "ERROR", "RUNTIME_ERROR", err, NULL);
		return EXIT_CANNOT_ATTACH;
	}
	/* The True singleton's address tells bools apart in decoding. */
	{
		struct pyprobe_layout lay;

		if (probe_engine_get_layout(tr->engine, env.pid, &lay) == 0)
			tr->target.true_addr = lay.true_addr;
	}
	tell_frame_offsets(tr);
	if (pick_slot(tr)) {
		emit_status(tr, "ERROR", "RUNTIME_ERROR", "no free probe slot in the helper", NULL);
		return EXIT_CANNOT_ATTACH;
	}
	probe_engine_reset_stats(tr->engine, tr->slot);
	helper_set_lease(&tr->hc, LEASE_MS);
	ret = hook(tr, line_probe);
	if (ret)
		return ret;
	fill_probe(tr, line_probe);
	ret = set_keys(tr, line_probe);
	if (ret) {
		snprintf(err, sizeof(err), "updating the probe map: %s", strerror(-ret));
		emit_status(tr, "ERROR", "RUNTIME_ERROR", err, NULL);
		return EXIT_CANNOT_ATTACH;
	}
	set_gate(tr, true, 0);
	extra = json_pack("{s:s,s:O,s:s,s:o}", "coverage", "hooked-code", "codes", tr->codes,
			  "inject_path", inject_path_name(res.path), "warnings",
			  code_warnings(tr->codes));
	if (tr->routes)
		json_object_set(extra, "routes", tr->routes);
	emit_status(tr, "READY", NULL, NULL, extra);
	json_decref(extra);

	return poll_loop(tr, start, true);
}

/*
 * 3.11: another probe on the same code (a second pydi, the agent) makes the
 * helper build a new hooked code object, and our BPF keys would name the old
 * one: a silent READY. Follow the code ids the helper reports.
 */
static void follow_code_changes(struct trace *tr, bool line_probe)
{
	char err[256];
	json_t *reply, *hook, *code;
	size_t i, j;
	bool changed = false;

	reply = command(tr, json_pack("{s:s}", "cmd", "hooks"), err, sizeof(err));
	if (!reply)
		return;
	json_array_foreach(json_object_get(reply, "hooks"), i, hook) {
		const char *id = json_string_value(json_object_get(hook, "probe_id"));

		if (!id || strcmp(id, tr->probe_id) != 0)
			continue;
		json_array_foreach(json_object_get(hook, "codes"), j, code) {
			json_t *mine = json_array_get(tr->codes, j);

			if (mine && !json_equal(json_object_get(mine, "code_id"),
						json_object_get(code, "code_id"))) {
				json_object_set(mine, "code_id", json_object_get(code, "code_id"));
				changed = true;
			}
		}
	}
	json_decref(reply);
	if (!changed)
		return;
	remove_keys(tr);
	json_decref(tr->keys);
	tr->keys = NULL;
	if (set_keys(tr, line_probe))
		p_info("warning: probe %s: re-keying after a code change failed", tr->probe_id);
}

/* What BPF counted, and what the helper's gate kept from the trap. */
static void print_counters(struct trace *tr)
{
	struct pyprobe_stats st;
	struct pydi_gate gate = { 0 };
	struct proc_mem pm;

	if (probe_engine_stats(tr->engine, tr->slot, &st))
		return;
	if (tr->hc.state.gates) {
		proc_mem_init(&pm, env.pid);
		proc_mem_read(&pm, gate_addr(tr), &gate, sizeof(gate));
		proc_mem_close(&pm);
	}
	p_info("pydi: probe %s: %ld snapshots; calls %llu (gated off %llu), reached BPF %llu, "
	       "dropped: rate %llu, max-hits %llu, ring buffer %llu", tr->probe_id,
	       tr->snapshots, (unsigned long long)gate.hits,
	       (unsigned long long)gate.skipped, (unsigned long long)st.hits,
	       (unsigned long long)st.drop_rate, (unsigned long long)st.drop_max_hits,
	       (unsigned long long)st.drop_ringbuf);
}

static int poll_loop(struct trace *tr, uint64_t start, bool renew_lease)
{
	uint64_t last_renew = 0;
	struct pyprobe_stats st;

	while (!exiting) {
		uint64_t now = monotonic_ns();

		if (probe_engine_poll(tr->engine, POLL_MS) < 0 && !exiting)
			break;
		if (now - last_renew > LEASE_RENEW_MS * 1000000ull) {
			if (renew_lease)
				helper_set_lease(&tr->hc, LEASE_MS);
			if (tr->rekey)
				follow_code_changes(tr, tr->probe.line != 0);
			last_renew = now;
			if (kill(env.pid, 0) && errno == ESRCH) {
				emit_status(tr, "ERROR", "RUNTIME_ERROR", "the target exited", NULL);
				tr->hooked = false;
				return EXIT_CANNOT_ATTACH;
			}
		}
		evict_stale(tr, false);
		if (count_reached(tr))
			break;
		if (!tr->disabled && tr->cfg.max_hits &&
		    probe_engine_stats(tr->engine, tr->slot, &st) == 0 &&
		    st.emitted >= tr->cfg.max_hits) {
			/* Let the returns of captured calls arrive first. */
			probe_engine_poll(tr->engine, POLL_MS);
			evict_stale(tr, true);
			tr->disabled = true;
			set_gate(tr, false, 0);
			emit_status(tr, "DISABLED", NULL, "MaxHits reached", NULL);
			break;
		}
		if (env.timeout > 0 && now - start >= (uint64_t)(env.timeout * 1e9))
			break;
	}
	probe_engine_poll(tr->engine, 0);
	evict_stale(tr, true);
	print_counters(tr);
	return EXIT_DONE;
}

static int do_help(void)
{
	fprintf(stderr,
		"Usage: %s [-j|--pretty] trace -p PID TARGET [OPTIONS]\n"
		"\n"
		"       TARGET := { module:qualname | module:qualname@LINE | path/file.py:LINE }\n"
		"       OPTIONS := { --capture args,locals,return,stack | --max-hits N |\n"
		"                    --rate N | --count N | --timeout S | --no-inject |\n"
		"                    --redact NAME[,NAME...] |\n"
		"                    --limits string=255,collection=20,depth=3,fields=20,frames=20 }\n"
		"\n"
		"       Function probes capture args, return and stack by default; line\n"
		"       probes capture locals and stack. Exit codes: 0 done, 1 usage,\n"
		"       2 probe ERROR, 3 cannot attach. The target is reverted on exit.\n"
		"\n"
		"Examples:\n"
		"       %s trace -p 4242 app.orders:price_order --count 3\n"
		"       %s -j trace -p 4242 app/orders.py:57 --timeout 30\n",
		bin_name, bin_name, bin_name);
	return EXIT_DONE;
}

int do_trace(int argc, char **argv)
{
	static const struct option options[] = {
		{ "pid",	required_argument, NULL, 'p' },
		{ "capture",	required_argument, NULL, 'c' },
		{ "max-hits",	required_argument, NULL, 'm' },
		{ "rate",	required_argument, NULL, 'r' },
		{ "count",	required_argument, NULL, 'n' },
		{ "timeout",	required_argument, NULL, 't' },
		{ "limits",	required_argument, NULL, 'l' },
		{ "no-inject",	no_argument,	   NULL, 'N' },
		{ "redact",	required_argument, NULL, 'R' },
		{ "help",	no_argument,	   NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct trace *tr;
	char *end;
	int opt, ret;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc + 1, argv - 1, "p:h", options, NULL)) >= 0) {
		switch (opt) {
		case 'p':
			if (parse_pid(optarg, &env.pid))
				goto usage;
			break;
		case 'c':
			if (parse_capture(optarg))
				goto usage;
			break;
		case 'm':
			env.max_hits = strtol(optarg, &end, 10);
			if (*end || env.max_hits < 0)
				goto usage;
			break;
		case 'r':
			env.rate = strtod(optarg, &end);
			if (*end || env.rate < 0)
				goto usage;
			break;
		case 'n':
			env.count = strtol(optarg, &end, 10);
			if (*end || env.count < 0)
				goto usage;
			break;
		case 't':
			env.timeout = strtod(optarg, &end);
			if (*end || env.timeout < 0)
				goto usage;
			break;
		case 'l':
			if (parse_limits(optarg))
				goto usage;
			break;
		case 'N':
			env.no_inject = true;
			break;
		case 'R':
			env.redact = optarg;
			break;
		case 'h':
			return do_help();
		default:
			goto usage;
		}
	}
	argc -= optind - 1;
	argv += optind - 1;
	if (!env.pid || argc != 1 || !argv[0][0])
		goto usage;
	env.target = argv[0];
	if (!env.capture_given)
		env.capture = is_line_target(env.target) ?
			PYPROBE_CAPTURE_LOCALS | PYPROBE_CAPTURE_STACK :
			PYPROBE_CAPTURE_ARGS | PYPROBE_CAPTURE_RETURN | PYPROBE_CAPTURE_STACK;

	tr = calloc(1, sizeof(*tr));
	if (!tr)
		return EXIT_CANNOT_ATTACH;
	if (env.redact) {
		char *copy = strdup(env.redact), *tok, *save = NULL;

		for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			redactor_add_name(&tr->redactor, tok);
		free(copy);
	}
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	ret = run(tr);
	revert(tr);
	for (size_t i = 0; i < PENDING_MAX; i++)
		free(tr->pending[i].cap);
	json_decref(tr->codes);
	json_decref(tr->routes);
	json_decref(tr->keys);
	probe_engine_close(tr->engine);
	snapshot_target_free(&tr->target);
	redactor_free(&tr->redactor);
	helper_close(&tr->hc);
	pyproc_close(&tr->pp);
	free(tr);
	return ret;
usage:
	p_err("usage: %s trace -p PID TARGET [--capture args,locals,return,stack] [--max-hits N] [--rate N] [--count N] [--timeout S] [--limits ...] [--redact NAMES] [--no-inject]",
	      bin_name);
	return EXIT_USAGE;
}
