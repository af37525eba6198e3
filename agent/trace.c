// SPDX-License-Identifier: MIT
/*
 * pydi trace -p PID TARGET: one ad-hoc probe on one process, no daemon.
 * Load the helper (once), hook the code, match and capture in BPF, print
 * statuses and snapshots, and revert everything on the way out.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "attach.h"
#include "call_pairs.h"
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
#define DRAIN_MS		2000	/* MaxHits, exit: wait this long for call ends, the ring buffer */
#define TOLD_ENDS_POLL_MS	10	/* an entry waits for its told end */
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

/* Work a thread does while the main thread talks to the target. */
struct side_job {
	pthread_t thread;
	bool running;
	int ret;
	char err[512];
};

struct trace {
	struct side_job load;		/* pyprobe through the verifier */
	struct side_job uprobe;		/* the helper's uprobe: ret is its fd */
	struct attached_proc ap;
	struct hooked_probe hp;
	struct probe_spec spec;
	struct probe_engine *engine;
	struct snapshot_probe probe;
	struct redactor redactor;
	char probe_id[32];
	bool active;
	bool disabled;
	long snapshots;
	struct call_pairs pairs;
	uint64_t told_ends_lost;	/* overwritten in the helper's ring unread */
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
		json_write(snap);
		return;
	}
	printf("snapshot %s  %s:%s  pid %d thread %lld\n",
	       json_string_value(json_object_get(snap, "id")), tr->hp.module, tr->hp.qualname,
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
}

/* A free slot: random start, first one no one has armed. */
static int pick_slot(struct trace *tr, uint32_t *slot)
{
	uint32_t start;

	if (getrandom(&start, sizeof(start), 0) != sizeof(start))
		start = (uint32_t)getpid();
	for (uint32_t i = 0; i < PYDI_MAX_GATES; i++) {
		*slot = (start + i) % PYDI_MAX_GATES;
		if (attach_slot_free(&tr->ap, *slot))
			return 0;
	}
	return -ENOSPC;
}

/* --- capture pairing ----------------------------------------------------- */

/* --count N prints exactly N: one ring-buffer poll may bring more. */
static bool count_reached(const struct trace *tr)
{
	return env.count && tr->snapshots >= env.count;
}

static void emit_pair(void *ctx, const struct pyprobe_capture *first, size_t first_size,
		      const struct pyprobe_capture *end, size_t end_size)
{
	struct trace *tr = ctx;
	json_t *snap;

	if (count_reached(tr))
		return;
	snap = snapshot_build(&tr->ap.snap, &tr->probe, first, first_size, end, end_size);
	if (!snap)
		return;
	emit_snapshot(tr, snap);
	json_decref(snap);
	tr->snapshots++;
}

static int on_capture(void *ctx, const struct pyprobe_capture *cap, size_t size)
{
	struct trace *tr = ctx;

	if (cap->slot != tr->hp.slot || cap->tgid != (uint32_t)env.pid || count_reached(tr))
		return 0;
	if (!tr->active) {
		tr->active = true;
		emit_status(tr, "ACTIVE", NULL, NULL, NULL);
	}
	call_pairs_add(&tr->pairs, tr->hp.cfg.pairs_return, cap, size, emit_pair, tr);
	/* Keep the gate's idea of the next allowed time current. */
	hooked_probe_refresh_gate(&tr->ap, tr->engine, &tr->hp);
	return 0;
}

static void on_told_end(void *ctx, const struct pydi_end *end)
{
	struct trace *tr = ctx;

	if (end->slot == tr->hp.slot)
		call_pairs_told_end(&tr->pairs, end->frame, end->ts_ns, emit_pair, tr);
}

/* The returns the helper told in its ends ring (PYDI_GATE_END_IN_RING). */
static void take_told_ends(struct trace *tr)
{
	if (tr->hp.ends_in_ring)
		attach_take_ends(&tr->ap, on_told_end, tr, &tr->told_ends_lost);
}

/* Captures, then the told ends of their calls; sooner while entries wait. */
static int poll_captures(struct trace *tr)
{
	int waiting = tr->hp.ends_in_ring && !call_pairs_empty(&tr->pairs);
	int ret = probe_engine_poll(tr->engine, waiting ? TOLD_ENDS_POLL_MS : POLL_MS);

	take_told_ends(tr);
	return ret;
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

/* --- attaching ------------------------------------------------------------ */

static void *load_engine(void *arg)
{
	struct trace *tr = arg;

	tr->load.ret = probe_engine_open(&tr->engine, RINGBUF_BYTES, env.no_inject, on_capture,
					 tr, tr->load.err, sizeof(tr->load.err));
	return NULL;
}

static void *open_hook_event(void *arg)
{
	struct trace *tr = arg;

	tr->uprobe.ret = probe_engine_open_hook_event(&tr->ap.hc, tr->uprobe.err,
						      sizeof(tr->uprobe.err));
	return NULL;
}

/* Without a thread the job runs here: slower, never wrong. */
static void side_start(struct side_job *job, void *(*fn)(void *), struct trace *tr)
{
	job->running = pthread_create(&job->thread, NULL, fn, tr) == 0;
	if (!job->running)
		fn(tr);
}

static int side_join(struct side_job *job)
{
	if (job->running)
		pthread_join(job->thread, NULL);
	job->running = false;
	return job->ret;
}

/* Join both jobs (do_trace, whatever run() did); an uprobe fd nobody took
 * is closed. */
static void side_join_all(struct trace *tr)
{
	side_join(&tr->load);
	if (side_join(&tr->uprobe) >= 0) {
		close(tr->uprobe.ret);
		tr->uprobe.ret = -EBADF;
	}
}

/*
 * Attaching failed with err: say so, naming the BPF load's failure first
 * when there is one (without root everything fails, and that is why).
 */
static int attach_failed(struct trace *tr, int ret, const char *err)
{
	if (side_join(&tr->load))
		emit_status(tr, "ERROR", "RUNTIME_ERROR", tr->load.err, NULL);
	else
		emit_status(tr, "ERROR", ret == -EMEDIUMTYPE ? "LANGUAGE_MISMATCH" :
			    "RUNTIME_ERROR", err, NULL);
	return EXIT_CANNOT_ATTACH;
}

/* pyprobe loaded and told about the process: 0, or the exit code. */
static int engine_ready(struct trace *tr)
{
	char err[512];
	int ret = side_join(&tr->load);

	if (!ret)
		ret = probe_engine_add_process(tr->engine, &tr->ap.pp, err, sizeof(err));
	return ret ? attach_failed(tr, ret, err) : 0;
}

static void revert(struct trace *tr)
{
	hooked_probe_detach(&tr->ap, tr->engine, tr->probe_id, &tr->hp);
	attach_close(&tr->ap, tr->engine);
}

/* Hook the target; on a probe error print the status: exit code or 0. */
static int hook(struct trace *tr, uint32_t slot)
{
	const char *cause;
	char err[512];
	int ret;

	ret = hooked_probe_hook(&tr->ap, &tr->spec, slot, &tr->hp, &cause, err, sizeof(err));
	if (ret) {
		emit_status(tr, "ERROR", cause, err, NULL);
		return ret == -ENOENT ? EXIT_PROBE_ERROR : EXIT_CANNOT_ATTACH;
	}
	return 0;
}

static void fill_probe(struct trace *tr)
{
	hooked_probe_describe(&tr->hp, &tr->spec, &tr->probe);
	tr->probe.instrumentation_type = "BREAKPOINT";
	tr->probe.redactor = &tr->redactor;
}

static int poll_loop(struct trace *tr, uint64_t start, bool renew_lease);

/*
 * --no-inject: nothing runs in the target. A uprobe on the interpreter's
 * _PyEval_EvalFrameDefault sees only frames entered from C (3.11+ inlines
 * Python-to-Python calls), so a probe may never fire: READY says so.
 */
static int run_no_inject(struct trace *tr)
{
	struct hooked_probe *hp = &tr->hp;
	const struct pycode_info *ci;
	char err[512];
	uint64_t code;
	json_t *extra;
	int ret;

	if (tr->spec.line_probe) {
		emit_status(tr, "ERROR", "LINE_NOT_EXECUTABLE",
			    "line probes need the helper's hooks: drop --no-inject", NULL);
		return EXIT_PROBE_ERROR;
	}
	ret = memresolve_code(&tr->ap.pp, env.target, &code, err, sizeof(err));
	if (ret) {
		emit_status(tr, "ERROR", ret == -EINVAL ? "RUNTIME_ERROR" :
			    strstr(err, "not loaded") ? "FILE_NOT_FOUND" : "METHOD_NOT_FOUND",
			    err, NULL);
		return EXIT_PROBE_ERROR;
	}
	if (probe_engine_attach_eval_frame(tr->engine, &tr->ap.pp, err, sizeof(err))) {
		emit_status(tr, "ERROR", "RUNTIME_ERROR", err, NULL);
		return EXIT_CANNOT_ATTACH;
	}
	ci = code_cache_get(&tr->ap.snap.codes, code);
	memset(hp, 0, sizeof(*hp));
	probe_engine_reset_stats(tr->engine, 0);
	probe_spec_config(&hp->cfg, &tr->spec, 0, ci);
	/* At eval-frame entry no cell exists yet, and no return is seen. */
	hp->cfg.cell_mask = 0;
	hp->cfg.pairs_return = 0;
	{
		struct pyprobe_key key = { .tgid = (uint32_t)env.pid, .event = PYPROBE_EV_ENTRY,
					   .code = code };

		ret = probe_engine_set_probe(tr->engine, &key, &hp->cfg);
		hp->keys = json_pack("[[I,i,i]]", (json_int_t)code, PYPROBE_EV_ENTRY, 0);
	}
	if (ret) {
		emit_status(tr, "ERROR", "RUNTIME_ERROR", "updating the probe map failed", NULL);
		return EXIT_CANNOT_ATTACH;
	}
	snprintf(hp->module, sizeof(hp->module), "%.*s",
		 (int)(strchr(env.target, ':') - env.target), env.target);
	snprintf(hp->qualname, sizeof(hp->qualname), "%s", strchr(env.target, ':') + 1);
	if (ci)
		snprintf(hp->file, sizeof(hp->file), "%s", ci->filename);
	hp->codes = json_pack("[{s:I}]", "code_id", (json_int_t)code);
	fill_probe(tr);
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
	uint64_t start = monotonic_ns();
	uint32_t slot;
	char err[512];
	json_t *extra;
	int ret;

	snprintf(tr->probe_id, sizeof(tr->probe_id), "trace-%d", getpid());
	tr->spec.probe_id = tr->probe_id;
	/*
	 * Verifying pyprobe (~10 ms of CPU), creating the helper's uprobe (~10 ms
	 * waiting in the kernel) and the hook command (the helper waits for the
	 * GIL: up to a switch interval on a busy target) need nothing from each
	 * other: they overlap, and READY waits for all of them.
	 */
	tr->uprobe.ret = -EBADF;
	side_start(&tr->load, load_engine, tr);
	ret = attach_open_proc(&tr->ap, env.pid, err, sizeof(err));
	if (ret == -ENOEXEC)	/* no CPython at all: a language mismatch too */
		ret = -EMEDIUMTYPE;
	if (ret)
		return attach_failed(tr, ret, err);
	if (env.no_inject) {
		ret = engine_ready(tr);
		return ret ? ret : run_no_inject(tr);
	}
	ret = attach_inject_helper(&tr->ap, LEASE_MS, err, sizeof(err));
	if (ret)
		return attach_failed(tr, ret, err);
	side_start(&tr->uprobe, open_hook_event, tr);
	if (pick_slot(tr, &slot))
		return attach_failed(tr, -ENOSPC, "no free probe slot in the helper");
	ret = hook(tr, slot);
	if (ret)
		return ret;
	ret = engine_ready(tr);
	if (ret)
		return ret;
	ret = side_join(&tr->uprobe);
	if (ret < 0)
		return attach_failed(tr, ret, tr->uprobe.err);
	tr->uprobe.ret = -EBADF;	/* the link owns the fd now, even on failure */
	ret = attach_hook_uprobe(&tr->ap, tr->engine, ret, err, sizeof(err));
	if (!ret)
		ret = hooked_probe_arm(&tr->ap, tr->engine, &tr->hp, err, sizeof(err));
	if (ret)
		return attach_failed(tr, ret, err);
	fill_probe(tr);
	extra = json_pack("{s:s,s:O,s:s,s:o}", "coverage", "hooked-code", "codes",
			  tr->hp.codes, "inject_path", inject_path_name(tr->ap.inject.path),
			  "warnings", hooked_probe_warnings(&tr->hp));
	if (tr->hp.routes)
		json_object_set(extra, "routes", tr->hp.routes);
	emit_status(tr, "READY", NULL, NULL, extra);
	json_decref(extra);

	return poll_loop(tr, start, true);
}

/* What BPF counted, and what the helper's gate kept from the trap. */
static void print_counters(struct trace *tr)
{
	struct pyprobe_stats st;
	struct pydi_gate gate;

	if (probe_engine_stats(tr->engine, tr->hp.slot, &st))
		return;
	attach_read_gate(&tr->ap, tr->hp.slot, &gate);
	p_info("pydi: probe %s: %ld snapshots; calls %llu (gated off %llu), reached BPF %llu, "
	       "dropped: rate %llu, max-hits %llu, ring buffer %llu; call ends lost %llu",
	       tr->probe_id, tr->snapshots, (unsigned long long)gate.hits,
	       (unsigned long long)gate.skipped, (unsigned long long)st.hits,
	       (unsigned long long)st.drop_rate, (unsigned long long)st.drop_max_hits,
	       (unsigned long long)st.drop_ringbuf, (unsigned long long)tr->told_ends_lost);
}

static int poll_loop(struct trace *tr, uint64_t start, bool renew_lease)
{
	uint64_t last_renew = 0;
	struct pyprobe_stats st;

	while (!exiting) {
		uint64_t now = monotonic_ns();

		if (poll_captures(tr) < 0 && !exiting)
			break;
		fflush(stdout);	/* snapshots are written unflushed, a batch per poll */
		if (now - last_renew > LEASE_RENEW_MS * 1000000ull) {
			if (renew_lease)
				attach_renew_lease(&tr->ap, LEASE_MS);
			hooked_probe_follow_code(&tr->ap, tr->engine, tr->probe_id, &tr->hp);
			last_renew = now;
			if (kill(env.pid, 0) && errno == ESRCH) {
				emit_status(tr, "ERROR", "RUNTIME_ERROR", "the target exited", NULL);
				tr->hp.hooked = false;
				return EXIT_CANNOT_ATTACH;
			}
		}
		call_pairs_evict(&tr->pairs, false, emit_pair, tr);
		if (count_reached(tr))
			break;
		if (!tr->disabled && tr->hp.cfg.max_hits &&
		    probe_engine_stats(tr->engine, tr->hp.slot, &st) == 0 &&
		    st.emitted >= tr->hp.cfg.max_hits) {
			/* No new call through the gate; the ends of the captured
			 * ones still pass it, and each snapshot waits for its end. */
			uint64_t drain_end = monotonic_ns() + DRAIN_MS * 1000000ull;

			attach_set_gate(&tr->ap, tr->hp.slot, true, UINT64_MAX);
			while (!call_pairs_empty(&tr->pairs) && monotonic_ns() < drain_end &&
			       !exiting)
				poll_captures(tr);
			call_pairs_evict(&tr->pairs, true, emit_pair, tr);
			tr->disabled = true;
			attach_set_gate(&tr->ap, tr->hp.slot, false, 0);
			emit_status(tr, "DISABLED", NULL, "MaxHits reached", NULL);
			break;
		}
		if (env.timeout > 0 && now - start >= (uint64_t)(env.timeout * 1e9))
			break;
	}
	/*
	 * No new call through the gate (the ends of captured ones still pass
	 * it), then every capture still in the ring buffer goes out: one poll
	 * stops after ~50 ms, and what it left would be lost uncounted.
	 */
	if (!tr->disabled)
		attach_set_gate(&tr->ap, tr->hp.slot, true, UINT64_MAX);
	probe_engine_drain(tr->engine, DRAIN_MS);
	take_told_ends(tr);
	call_pairs_evict(&tr->pairs, true, emit_pair, tr);
	fflush(stdout);
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

	/*
	 * Snapshots are flushed once per ring-buffer poll and statuses at once:
	 * line buffering would cost a write(2) per snapshot (~10 % of the
	 * pipeline at full speed). Nothing has been written to stdout yet.
	 */
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
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
		env.capture = probe_target_is_line(env.target) ?
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
	tr->spec.target = env.target;
	tr->spec.line_probe = probe_target_is_line(env.target);
	tr->spec.capture = env.capture;
	tr->spec.max_hits = env.max_hits < 0 ? DEFAULT_MAX_HITS : (uint32_t)env.max_hits;
	tr->spec.rate = env.rate;
	tr->spec.limits = env.limits;
	ret = run(tr);
	side_join_all(tr);
	revert(tr);
	call_pairs_clear(&tr->pairs);
	hooked_probe_free(&tr->hp);
	probe_engine_close(tr->engine);
	redactor_free(&tr->redactor);
	free(tr);
	return ret;
usage:
	p_err("usage: %s trace -p PID TARGET [--capture args,locals,return,stack] [--max-hits N] [--rate N] [--count N] [--timeout S] [--limits ...] [--redact NAMES] [--no-inject]",
	      bin_name);
	return EXIT_USAGE;
}
