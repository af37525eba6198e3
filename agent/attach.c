// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "attach.h"
#include "errbuf.h"
#include "ptrace_call.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

#define COMMAND_TIMEOUT_MS	10000

int attach_open_proc(struct attached_proc *ap, pid_t pid, char *err, size_t err_len)
{
	uint64_t start_time;
	int ret;

	ap->pidfd = -1;
	ret = pyproc_open(pid, &ap->pp, err, err_len);
	if (ret)
		return ret;
	ap->opened = true;
	/* The pidfd names the process we just inspected only if the pid still
	 * has its start time once the pidfd is open. */
	ap->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (ap->pidfd < 0 || proc_read_start_time(pid, &start_time) ||
	    start_time != ap->pp.start_time) {
		set_err(err, err_len, "pid %d: the process is gone", pid);
		return -ESRCH;
	}
	snapshot_target_init(&ap->snap, &ap->pp, 0);
	if (!ap->pp.instrumentable) {
		set_err(err, err_len, "pid %d: %s", pid, ap->pp.reason);
		return -EMEDIUMTYPE;
	}
	return 0;
}

int attach_open(struct attached_proc *ap, pid_t pid, struct probe_engine *pe,
		char *err, size_t err_len)
{
	int ret = attach_open_proc(ap, pid, err, err_len);

	return ret ? ret : probe_engine_add_process(pe, &ap->pp, err, err_len);
}

/*
 * Tell the helper where a thread state keeps its running frame, so its
 * gate can pair call ends with the starts it let through (a rate-limited
 * call then pays no trap at either end).
 */
static void tell_frame_offsets(struct attached_proc *ap)
{
	const struct py_offsets *o = &ap->pp.offsets;
	uint64_t where[5] = {
		o->tstate_cframe == PY_OFF_NONE ? UINT64_MAX : o->tstate_cframe,
		o->cframe_current_frame, o->tstate_current_frame, o->frame_code,
		o->frame_code_is_stackref ? ~(uint64_t)3 : ~(uint64_t)0,
	};
	uint64_t known = 1;

	if (!attach_alive(ap))
		return;
	if (pt_write_mem(ap->pp.pid, ap->hc.state_addr +
			 offsetof(struct pydi_helper_state, tstate_cframe),
			 where, sizeof(where)) == 0)
		pt_write_mem(ap->pp.pid, ap->hc.state_addr +
			     offsetof(struct pydi_helper_state, frame_known),
			     &known, sizeof(known));
}

static int read_ends_head(struct proc_mem *pm, const struct attached_proc *ap,
			  uint64_t *head)
{
	return proc_mem_read(pm, ap->hc.state.ends + offsetof(struct pydi_ends, head),
			     head, sizeof(*head));
}

/* Ends told before we came are no call of ours. */
static void skip_told_ends(struct attached_proc *ap)
{
	struct proc_mem pm;

	if (!ap->hc.state.ends)
		return;
	proc_mem_init(&pm, ap->pp.pid);
	if (read_ends_head(&pm, ap, &ap->ends_read))
		ap->ends_read = 0;
	proc_mem_close(&pm);
}

int attach_inject_helper(struct attached_proc *ap, uint64_t lease_ms, char *err,
			 size_t err_len)
{
	int ret = inject_helper(&ap->pp, &ap->hc, &ap->inject, err, err_len);

	if (ret)
		return ret;
	ap->injected = true;
	tell_frame_offsets(ap);
	skip_told_ends(ap);
	attach_renew_lease(ap, lease_ms);
	return 0;
}

int attach_hook_uprobe(struct attached_proc *ap, struct probe_engine *pe, int event_fd,
		       char *err, size_t err_len)
{
	struct pyprobe_layout lay;
	int ret = probe_engine_attach_hook(pe, &ap->hc, event_fd, err, err_len);

	if (ret)
		return ret;
	if (probe_engine_get_layout(pe, ap->pp.pid, &lay))
		return 0;
	/* The True singleton's address tells bools apart in decoding. */
	ap->snap.true_addr = lay.true_addr;
	/* The helper found the small ints: BPF need not read them. */
	lay.small_ints = ap->hc.state.small_ints;
	lay.small_int_size = ap->hc.state.small_int_size;
	probe_engine_set_layout(pe, ap->pp.pid, &lay);
	return 0;
}

int attach_inject(struct attached_proc *ap, struct probe_engine *pe,
		  uint64_t lease_ms, char *err, size_t err_len)
{
	int ret = attach_inject_helper(ap, lease_ms, err, err_len);

	return ret ? ret : attach_hook_uprobe(ap, pe, -1, err, err_len);
}

bool attach_alive(const struct attached_proc *ap)
{
	return ap->pidfd >= 0 &&
	       syscall(SYS_pidfd_send_signal, ap->pidfd, 0, NULL, 0) == 0;
}

void attach_renew_lease(struct attached_proc *ap, uint64_t lease_ms)
{
	if (ap->injected && attach_alive(ap))
		helper_set_lease(&ap->hc, lease_ms);
}

void attach_close(struct attached_proc *ap, struct probe_engine *pe)
{
	attach_renew_lease(ap, 0);
	if (ap->opened) {
		if (pe)
			probe_engine_remove_process(pe, ap->pp.pid);
		snapshot_target_free(&ap->snap);
		pyproc_close(&ap->pp);
	}
	if (ap->injected)
		helper_close(&ap->hc);
	if (ap->opened && ap->pidfd >= 0)
		close(ap->pidfd);
	ap->pidfd = -1;
	ap->opened = ap->injected = false;
}

json_t *attach_command(struct attached_proc *ap, json_t *cmd, char *err,
		       size_t err_len)
{
	char *text = json_dumps(cmd, JSON_COMPACT), *reply = NULL;
	json_error_t jerr;
	json_t *parsed;
	int ret;

	json_decref(cmd);
	if (!text) {
		set_err(err, err_len, "out of memory");
		return NULL;
	}
	if (!attach_alive(ap)) {
		free(text);
		set_err(err, err_len, "pid %d: the process is gone", ap->pp.pid);
		return NULL;
	}
	ret = helper_command(&ap->hc, text, &reply, COMMAND_TIMEOUT_MS);
	free(text);
	if (ret) {
		set_err(err, err_len, "pid %d: helper command failed: %s", ap->pp.pid,
			strerror(-ret));
		return NULL;
	}
	parsed = json_loads(reply, 0, &jerr);
	free(reply);
	if (!parsed)
		set_err(err, err_len, "pid %d: helper sent invalid JSON: %s", ap->pp.pid,
			jerr.text);
	return parsed;
}

/* --- gates ---------------------------------------------------------------- */

static uint64_t gate_addr(const struct attached_proc *ap, uint32_t slot)
{
	return ap->hc.state.gates + (uint64_t)slot * sizeof(struct pydi_gate);
}

static int read_gates(struct attached_proc *ap, uint32_t first, uint32_t n,
		      struct pydi_gate *out)
{
	struct proc_mem pm;
	int ret;

	memset(out, 0, n * sizeof(*out));
	if (!ap->injected || !ap->hc.state.gates)
		return -ENOENT;
	proc_mem_init(&pm, ap->pp.pid);
	ret = proc_mem_read(&pm, gate_addr(ap, first), out, n * sizeof(*out));
	proc_mem_close(&pm);
	return ret;
}

int attach_read_gate(struct attached_proc *ap, uint32_t slot,
		     struct pydi_gate *gate)
{
	if (slot >= PYDI_MAX_GATES) {
		memset(gate, 0, sizeof(*gate));
		return -ENOENT;
	}
	return read_gates(ap, slot, 1, gate);
}

int attach_read_gates(struct attached_proc *ap, struct pydi_gate *gates)
{
	return read_gates(ap, 0, PYDI_MAX_GATES, gates);
}

/* Arm or disarm a slot's gate; next_allowed_ns keeps rate-limited calls
 * away from the uprobe trap. The counters are the helper's to write. */
void attach_set_gate(struct attached_proc *ap, uint32_t slot, bool armed,
		     uint64_t next_allowed_ns)
{
	struct pydi_gate gate;

	if (attach_read_gate(ap, slot, &gate) || !attach_alive(ap))
		return;
	gate.armed = armed;
	gate.next_allowed_ns = next_allowed_ns;
	pt_write_mem(ap->pp.pid, gate_addr(ap, slot), &gate,
		     offsetof(struct pydi_gate, hits));
}

/* At most max of the ends not read yet into out: how many, or -errno. */
static int read_ends(struct attached_proc *ap, struct pydi_end *out, size_t max,
		     uint64_t *lost)
{
	uint64_t rec = ap->hc.state.ends + offsetof(struct pydi_ends, rec);
	uint64_t head, again, from = ap->ends_read, n, gone;
	struct proc_mem pm;
	int ret;

	if (!ap->injected || !ap->hc.state.ends || !max)
		return 0;
	proc_mem_init(&pm, ap->pp.pid);
	ret = read_ends_head(&pm, ap, &head);
	if (ret)
		goto out;
	if (head < from)		/* not the ring we knew: start over */
		from = head;
	if (head - from > PYDI_ENDS_MAX) {
		*lost += head - from - PYDI_ENDS_MAX;
		from = head - PYDI_ENDS_MAX;
	}
	n = head - from < max ? head - from : max;
	for (uint64_t i = 0; i < n;) {
		uint64_t at = (from + i) & (PYDI_ENDS_MAX - 1);
		uint64_t run = n - i < PYDI_ENDS_MAX - at ? n - i : PYDI_ENDS_MAX - at;

		ret = proc_mem_read(&pm, rec + at * sizeof(*out), out + i, run * sizeof(*out));
		if (ret)
			goto out;
		i += run;
	}
	ret = read_ends_head(&pm, ap, &again);
	if (ret)
		goto out;
	/* What the hook may have rewritten while we read is not trusted. */
	gone = again - from > PYDI_ENDS_MAX ? again - from - PYDI_ENDS_MAX : 0;
	if (gone > n)
		gone = n;
	memmove(out, out + gone, (n - gone) * sizeof(*out));
	*lost += gone;
	ap->ends_read = from + n;
	ret = (int)(n - gone);
out:
	proc_mem_close(&pm);
	return ret;
}

void attach_take_ends(struct attached_proc *ap,
		      void (*fn)(void *ctx, const struct pydi_end *end), void *ctx,
		      uint64_t *lost)
{
	struct pydi_end ends[256];
	int n;

	do {
		n = read_ends(ap, ends, sizeof(ends) / sizeof(ends[0]), lost);
		for (int i = 0; i < n; i++)
			fn(ctx, &ends[i]);
	} while (n == (int)(sizeof(ends) / sizeof(ends[0])));
}

bool attach_slot_free(struct attached_proc *ap, uint32_t slot)
{
	struct pydi_gate gate;

	if (slot >= PYDI_MAX_GATES)
		return false;
	return attach_read_gate(ap, slot, &gate) == -ENOENT || !gate.armed;
}

static void reset_gate(struct attached_proc *ap, uint32_t slot)
{
	struct pydi_gate gate = { 0 };

	if (ap->injected && ap->hc.state.gates && attach_alive(ap))
		pt_write_mem(ap->pp.pid, gate_addr(ap, slot), &gate, sizeof(gate));
}

/* --- hooking a probe ------------------------------------------------------- */

bool probe_target_is_line(const char *target)
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

void probe_spec_config(struct pyprobe_config *c, const struct probe_spec *spec,
		       uint32_t slot, const struct pycode_info *ci)
{
	uint64_t cells = 0;

	memset(c, 0, sizeof(*c));
	c->slot = slot;
	c->capture = spec->capture;
	c->nvars = ci ? (uint32_t)(ci->nlocalsplus < PYPROBE_MAX_VARS ? ci->nlocalsplus :
				   PYPROBE_MAX_VARS) : 0;
	for (size_t i = 0; ci && i < ci->nlocalsplus && i < 64; i++)
		if (ci->localsplus_kinds[i] & (CO_FAST_CELL | CO_FAST_FREE))
			cells |= 1ull << i;
	c->cell_mask = cells;
	c->max_hits = spec->max_hits;
	if (spec->rate > 0) {
		c->rate_interval_ns = (uint64_t)(1e9 / spec->rate);
		/* A second's worth of burst, as a token bucket of size rate. */
		c->rate_burst_ns = spec->rate >= 1 ?
			(rate_ceil(spec->rate) - 1) * c->rate_interval_ns : 0;
	}
	c->max_string = spec->limits.max_string;
	c->max_width = spec->limits.max_width;
	c->max_depth = spec->limits.max_depth;
	c->max_fields = spec->limits.max_fields;
	c->max_frames = spec->limits.max_frames;
	c->max_objs = PYPROBE_MAX_OBJS;
	c->pairs_return = !spec->line_probe;
}

static void remove_keys(struct attached_proc *ap, struct probe_engine *pe,
			struct hooked_probe *hp)
{
	json_t *k;
	size_t i;

	json_array_foreach(hp->keys, i, k) {
		struct pyprobe_key key = {
			.tgid = (uint32_t)ap->pp.pid,
			.code = (uint64_t)json_integer_value(json_array_get(k, 0)),
			.event = (uint32_t)json_integer_value(json_array_get(k, 1)),
			.line = json_integer_value(json_array_get(k, 2)),
		};

		probe_engine_del_probe(pe, &key);
	}
	json_decref(hp->keys);
	hp->keys = NULL;
}

static int set_keys(struct attached_proc *ap, struct probe_engine *pe,
		    const struct probe_spec *spec, struct hooked_probe *hp)
{
	static const uint32_t fn_events[] = { PYPROBE_EV_ENTRY, PYPROBE_EV_RETURN,
					      PYPROBE_EV_EXCEPTION };
	json_t *code;
	size_t i;

	hp->keys = json_array();
	json_array_foreach(hp->codes, i, code) {
		uint64_t code_id = (uint64_t)json_integer_value(json_object_get(code, "code_id"));
		int64_t line = json_integer_value(json_object_get(code, "line"));
		const struct pycode_info *ci = code_cache_get(&ap->snap.codes, code_id);

		probe_spec_config(&hp->cfg, spec, hp->slot, ci);
		for (size_t e = 0; e < (hp->line_probe ? 1 : 3); e++) {
			struct pyprobe_key key = {
				.tgid = (uint32_t)ap->pp.pid,
				.event = hp->line_probe ? PYPROBE_EV_LINE : fn_events[e],
				.code = code_id,
				.line = hp->line_probe ? line : 0,
			};
			int ret = probe_engine_set_probe(pe, &key, &hp->cfg);

			if (ret)
				return ret;
			json_array_append_new(hp->keys, json_pack("[I,i,I]",
					      (json_int_t)code_id, key.event, (json_int_t)key.line));
		}
	}
	return 0;
}

int hooked_probe_hook(struct attached_proc *ap, const struct probe_spec *spec,
		      uint32_t slot, struct hooked_probe *hp, const char **cause,
		      char *err, size_t err_len)
{
	json_t *reply, *events, *first;
	const char *mech;

	memset(hp, 0, sizeof(*hp));
	hp->slot = slot;
	hp->line_probe = spec->line_probe;
	hp->spec = *spec;
	hp->spec.probe_id = hp->spec.target = NULL;
	*cause = "RUNTIME_ERROR";
	reset_gate(ap, slot);
	events = spec->line_probe ? json_pack("[s]", "line") :
				    json_pack("[s,s,s]", "entry", "return", "exception");
	reply = attach_command(ap, json_pack("{s:s,s:s,s:i,s:s,s:o}", "cmd", "hook",
					     "probe_id", spec->probe_id, "slot", slot,
					     "target", spec->target, "events", events),
			       err, err_len);
	if (!reply)
		return -EPROTO;
	if (!json_is_true(json_object_get(reply, "ok"))) {
		const char *c = json_string_value(json_object_get(reply, "error_cause"));

		/* The reply dies here: keep the cause as a static string. */
		*cause = !c ? "RUNTIME_ERROR" :
			 strcmp(c, "FILE_NOT_FOUND") == 0 ? "FILE_NOT_FOUND" :
			 strcmp(c, "METHOD_NOT_FOUND") == 0 ? "METHOD_NOT_FOUND" :
			 strcmp(c, "LINE_NOT_EXECUTABLE") == 0 ? "LINE_NOT_EXECUTABLE" :
			 strcmp(c, "OVERLOADED_METHODS") == 0 ? "OVERLOADED_METHODS" :
			 "RUNTIME_ERROR";
		set_err(err, err_len, "%s", json_string_value(json_object_get(reply, "message")) ?:
			"the helper refused the hook");
		json_decref(reply);
		return -ENOENT;
	}
	hp->hooked = true;
	mech = json_string_value(json_object_get(reply, "mechanism"));
	hp->rekey = mech && strcmp(mech, "bytecode") == 0;
	hp->codes = json_incref(json_object_get(reply, "codes"));
	hp->routes = json_incref(json_object_get(reply, "routes"));
	snprintf(hp->module, sizeof(hp->module), "%s",
		 json_string_value(json_object_get(reply, "module")) ?: "");
	snprintf(hp->qualname, sizeof(hp->qualname), "%s",
		 json_string_value(json_object_get(reply, "object")) ?: "");
	json_decref(reply);
	first = json_array_get(hp->codes, 0);
	if (!first) {
		*cause = spec->line_probe ? "LINE_NOT_EXECUTABLE" : "METHOD_NOT_FOUND";
		set_err(err, err_len, "the target has no Python code to hook");
		return -ENOENT;
	}
	snprintf(hp->file, sizeof(hp->file), "%s",
		 json_string_value(json_object_get(first, "file")) ?: "");
	hp->line = spec->line_probe ? (int)json_integer_value(json_object_get(first, "line")) : 0;
	return 0;
}

/*
 * Arm the slot's gate for hp. A function probe that captures no return value
 * has its calls' ends told in the helper's ends ring: the end of a call needs
 * BPF only for what it captures (a return value, an exception), and its
 * trap was most of what it cost.
 */
static void arm_gate(struct attached_proc *ap, struct hooked_probe *hp)
{
	struct pydi_gate gate = { .armed = 1 };

	hp->ends_in_ring = !hp->line_probe && !(hp->spec.capture & PYPROBE_CAPTURE_RETURN) &&
			   ap->hc.state.ends;
	if (hp->ends_in_ring)
		gate.flags = PYDI_GATE_END_IN_RING;
	if (ap->injected && ap->hc.state.gates && attach_alive(ap))
		pt_write_mem(ap->pp.pid, gate_addr(ap, hp->slot), &gate,
			     offsetof(struct pydi_gate, hits));
}

int hooked_probe_arm(struct attached_proc *ap, struct probe_engine *pe,
		     struct hooked_probe *hp, char *err, size_t err_len)
{
	int ret;

	probe_engine_reset_stats(pe, hp->slot);
	ret = set_keys(ap, pe, &hp->spec, hp);
	if (ret) {
		set_err(err, err_len, "updating the probe map: %s", strerror(-ret));
		return ret;
	}
	arm_gate(ap, hp);
	return 0;
}

int hooked_probe_attach(struct attached_proc *ap, struct probe_engine *pe,
			const struct probe_spec *spec, uint32_t slot,
			struct hooked_probe *hp, const char **cause, char *err,
			size_t err_len)
{
	int ret = hooked_probe_hook(ap, spec, slot, hp, cause, err, err_len);

	return ret ? ret : hooked_probe_arm(ap, pe, hp, err, err_len);
}

void hooked_probe_detach(struct attached_proc *ap, struct probe_engine *pe,
			 const char *probe_id, struct hooked_probe *hp)
{
	char err[256];
	json_t *reply;

	/* Not hooked: the slot may be another pydi's. */
	if (hp->hooked)
		attach_set_gate(ap, hp->slot, false, 0);
	if (hp->keys)
		remove_keys(ap, pe, hp);
	if (hp->hooked) {
		reply = attach_command(ap, json_pack("{s:s,s:s}", "cmd", "unhook", "probe_id",
						     probe_id), err, sizeof(err));
		if (!reply)
			fprintf(stderr, "pydi: warning: %s (the lease reverts the hooks)\n", err);
		json_decref(reply);
		hp->hooked = false;
	}
}

void hooked_probe_free(struct hooked_probe *hp)
{
	json_decref(hp->codes);
	json_decref(hp->routes);
	json_decref(hp->keys);
	hp->codes = hp->routes = hp->keys = NULL;
}

void hooked_probe_refresh_gate(struct attached_proc *ap, struct probe_engine *pe,
			       struct hooked_probe *hp)
{
	struct pyprobe_stats st;

	if (hp->cfg.rate_interval_ns && probe_engine_stats(pe, hp->slot, &st) == 0 &&
	    st.tat_ns > hp->cfg.rate_burst_ns)
		attach_set_gate(ap, hp->slot, true, st.tat_ns - hp->cfg.rate_burst_ns);
}

/*
 * 3.11: another probe on the same code (a second pydi, the agent) makes the
 * helper build a new hooked code object, and our BPF keys would name the old
 * one: a silent READY. Follow the code ids the helper reports.
 */
json_t *attach_hooks_by_probe(struct attached_proc *ap)
{
	char err[256];
	json_t *reply, *by_probe, *hook;
	size_t i;

	reply = attach_command(ap, json_pack("{s:s}", "cmd", "hooks"), err, sizeof(err));
	if (!reply)
		return NULL;
	/* Indexed once: the agent looks up each of its probes (up to
	 * PYPROBE_MAX_PROBES of them) in one reply. */
	by_probe = json_object();
	json_array_foreach(json_object_get(reply, "hooks"), i, hook) {
		const char *id = json_string_value(json_object_get(hook, "probe_id"));
		json_t *same;

		if (!id)
			continue;
		same = json_object_get(by_probe, id);
		if (!same) {
			same = json_array();
			json_object_set_new(by_probe, id, same);
		}
		json_array_append(same, hook);
	}
	json_decref(reply);
	return by_probe;
}

void hooked_probe_follow_hooks(struct attached_proc *ap, struct probe_engine *pe,
			       const char *probe_id, struct hooked_probe *hp,
			       const json_t *by_probe)
{
	json_t *hook, *code;
	size_t i, j;
	bool changed = false;

	if (!hp->rekey || !hp->hooked)
		return;
	json_array_foreach(json_object_get(by_probe, probe_id), i, hook) {
		json_array_foreach(json_object_get(hook, "codes"), j, code) {
			json_t *mine = json_array_get(hp->codes, j);

			if (mine && !json_equal(json_object_get(mine, "code_id"),
						json_object_get(code, "code_id"))) {
				json_object_set(mine, "code_id", json_object_get(code, "code_id"));
				changed = true;
			}
		}
	}
	if (!changed)
		return;
	remove_keys(ap, pe, hp);
	if (set_keys(ap, pe, &hp->spec, hp))
		fprintf(stderr, "pydi: warning: probe %s: re-keying after a code change failed\n",
			probe_id);
}

void hooked_probe_follow_code(struct attached_proc *ap, struct probe_engine *pe,
			      const char *probe_id, struct hooked_probe *hp)
{
	json_t *hooks;
	uint64_t changes;

	if (!hp->rekey || !hp->hooked || helper_read_state(&ap->hc))
		return;
	changes = ap->hc.state.hook_changes;
	if (changes == hp->hook_changes_seen)
		return;
	hooks = attach_hooks_by_probe(ap);
	if (!hooks)
		return;		/* asked again next time */
	hooked_probe_follow_hooks(ap, pe, probe_id, hp, hooks);
	hp->hook_changes_seen = changes;
	json_decref(hooks);
}

json_t *hooked_probe_warnings(const struct hooked_probe *hp)
{
	json_t *all = json_array(), *code, *w;
	size_t i, j;

	json_array_foreach(hp->codes, i, code)
		json_array_foreach(json_object_get(code, "warnings"), j, w)
			if (json_is_string(w))
				json_array_append(all, w);
	return all;
}

void hooked_probe_describe(const struct hooked_probe *hp,
			   const struct probe_spec *spec,
			   struct snapshot_probe *sp)
{
	sp->probe_id = spec->probe_id;
	sp->module = hp->module;
	sp->qualname = hp->qualname;
	sp->file_path = hp->file[0] ? hp->file : NULL;
	sp->line = hp->line;
	sp->capture_args = spec->capture & PYPROBE_CAPTURE_ARGS;
	sp->capture_locals = spec->capture & PYPROBE_CAPTURE_LOCALS;
	sp->capture_return = spec->capture & PYPROBE_CAPTURE_RETURN;
	sp->capture_stack = spec->capture & PYPROBE_CAPTURE_STACK;
	sp->limits = spec->limits;
}
