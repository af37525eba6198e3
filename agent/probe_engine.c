// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <bpf/libbpf.h>
#include <bpf/bpf.h>

#include "capture_wire.h"
#include "clock.h"
#include "mapped_elf.h"
#include "probe_engine.h"
#include "procmaps.h"
#include "pyprobe.skel.h"

#define MAX_LINKS (2 * PYPROBE_MAX_PROCS)
/*
 * libbpf reads on while producers keep writing: a consumer slower than the
 * target's hits would never return, and its caller's timers (the lease
 * renewal first: the helper unhooks when it lapses) would never run.
 */
#define POLL_BUDGET_NS (50 * 1000000ull)

struct probe_engine {
	struct pyprobe *skel;
	struct ring_buffer *rb;
	probe_event_fn on_event;
	void *ctx;
	struct pyprobe_capture *cap;	/* the event being handled, spread out */
	uint64_t poll_deadline;		/* monotonic ns: stop reading after it */
	int polled;			/* events handled by this poll */
	bool over_budget;
	struct {
		pid_t pid;
		struct bpf_link *link;
	} links[MAX_LINKS];
	int nlinks;
};

static int handle_event(void *ctx, void *data, size_t size)
{
	struct probe_engine *pe = ctx;
	ssize_t cap_size = capture_expand(data, size, pe->cap);
	int ret = 0;

	pe->polled++;
	if (cap_size >= 0)
		ret = pe->on_event(pe->ctx, pe->cap, (size_t)cap_size);
	if (ret < 0)
		return ret;
	/* libbpf has consumed this event already; a negative return stops it. */
	if (monotonic_ns() >= pe->poll_deadline) {
		pe->over_budget = true;
		return -EAGAIN;
	}
	return ret;
}

static int quiet_print(enum libbpf_print_level level, const char *fmt,
		       va_list args)
{
	if (level == LIBBPF_DEBUG)
		return 0;
	return vfprintf(stderr, fmt, args);
}

int probe_engine_open(struct probe_engine **out, size_t ringbuf_bytes,
		      bool eval_frame, probe_event_fn on_event, void *ctx,
		      char *err, size_t err_len)
{
	struct probe_engine *pe = calloc(1, sizeof(*pe));
	int ret;

	if (!pe)
		return -ENOMEM;
	libbpf_set_print(quiet_print);
	pe->on_event = on_event;
	pe->ctx = ctx;
	pe->cap = malloc(sizeof(*pe->cap));
	if (!pe->cap) {
		free(pe);
		return -ENOMEM;
	}
	pe->skel = pyprobe__open();
	if (!pe->skel) {
		ret = -errno;
		snprintf(err, err_len, "opening the BPF object: %s", strerror(errno));
		goto fail;
	}
	if (ringbuf_bytes)
		bpf_map__set_max_entries(pe->skel->maps.events, ringbuf_bytes);
	/* Each program costs the verifier ~6 ms; a mode needs only its own. */
	bpf_program__set_autoload(pe->skel->progs.pydi_hook, !eval_frame);
	bpf_program__set_autoload(pe->skel->progs.pydi_eval_frame, eval_frame);
	ret = pyprobe__load(pe->skel);
	if (ret) {
		snprintf(err, err_len, "loading the BPF program: %s%s", strerror(-ret),
			 ret == -EPERM ? " (needs root or CAP_BPF+CAP_PERFMON)" : "");
		goto fail;
	}
	pe->rb = ring_buffer__new(bpf_map__fd(pe->skel->maps.events), handle_event,
				  pe, NULL);
	if (!pe->rb) {
		ret = -errno;
		snprintf(err, err_len, "creating the ring buffer: %s", strerror(errno));
		goto fail;
	}
	*out = pe;
	return 0;
fail:
	probe_engine_close(pe);
	return ret;
}

void probe_engine_close(struct probe_engine *pe)
{
	if (!pe)
		return;
	for (int i = 0; i < pe->nlinks; i++)
		bpf_link__destroy(pe->links[i].link);
	ring_buffer__free(pe->rb);
	pyprobe__destroy(pe->skel);
	free(pe->cap);
	free(pe);
}

static int symbol_in_interpreter(struct pyproc *pp, const char *name,
				 uint64_t *addr)
{
	struct proc_maps maps;
	const struct map_entry *interp = NULL;
	int ret = proc_maps_read(pp->pid, &maps);

	if (ret)
		return ret;
	for (size_t i = 0; i < maps.count; i++)
		if (maps.entries[i].start == pp->interp_map_start)
			interp = &maps.entries[i];
	ret = interp ? mapped_elf_symbol(pp->pid, &maps, interp, name, addr, NULL) :
		       -ENOENT;
	proc_maps_free(&maps);
	return ret;
}

int probe_engine_add_process(struct probe_engine *pe, struct pyproc *pp,
			     char *err, size_t err_len)
{
	const struct py_offsets *o = &pp->offsets;
	struct pyprobe_layout lay = {
		.tstate_cframe = o->tstate_cframe,
		.cframe_current_frame = o->cframe_current_frame,
		.tstate_current_frame = o->tstate_current_frame,
		.frame_previous = o->frame_previous,
		.frame_code = o->frame_code,
		.frame_instr_ptr = o->frame_instr_ptr,
		.frame_localsplus = o->frame_localsplus,
		.frame_owner = o->frame_owner,
		.object_type = o->object_type,
		.type_flags = o->type_flags,
		.type_basicsize = o->type_basicsize,
		.type_dictoffset = o->type_dictoffset,
		.type_cached_keys = o->type_cached_keys,
		.varobject_size = o->varobject_size,
		.tuple_item = o->tuple_item,
		.list_item = o->list_item,
		.bytes_sval = o->bytes_sval,
		.unicode_state = o->unicode_state,
		.unicode_length = o->unicode_length,
		.unicode_ascii_size = o->unicode_ascii_size,
		.unicode_compact_size = o->unicode_compact_size,
		.float_value = o->float_value,
		.long_tag = o->long_tag,
		.long_digit = o->long_digit,
		.dict_used = o->dict_used,
		.dict_keys = o->dict_keys,
		.dict_values = o->dict_values,
		.dict_values_items = o->dict_values_items,
		.cell_ref = o->cell_ref,
		.exc_args = o->exc_args,
		.frame_owner_cstack = o->frame_owner_cstack,
		.stackref_mask = o->frame_code_is_stackref ? 3 : 0,
		.attrs_mode = o->attrs_mode,
	};
	static const struct {
		const char *name;
		size_t at;
	} syms[] = {
		{ "_Py_NoneStruct", offsetof(struct pyprobe_layout, none_addr) },
		{ "_Py_TrueStruct", offsetof(struct pyprobe_layout, true_addr) },
		{ "_Py_FalseStruct", offsetof(struct pyprobe_layout, false_addr) },
		{ "PyLong_Type", offsetof(struct pyprobe_layout, long_type) },
		{ "PyUnicode_Type", offsetof(struct pyprobe_layout, unicode_type) },
		{ "PyFloat_Type", offsetof(struct pyprobe_layout, float_type) },
		{ "PyBool_Type", offsetof(struct pyprobe_layout, bool_type) },
		{ "PySet_Type", offsetof(struct pyprobe_layout, set_type) },
		{ "PyFrozenSet_Type", offsetof(struct pyprobe_layout, frozenset_type) },
	};
	__u32 tgid = (__u32)pp->pid;
	int ret;

	if (pp->offsets_source == PY_OFFSETS_NONE) {
		snprintf(err, err_len, "pid %d: no struct offsets: %s", pp->pid, pp->reason);
		return -ENOTSUP;
	}
	for (size_t i = 0; i < sizeof(syms) / sizeof(syms[0]); i++) {
		ret = symbol_in_interpreter(pp, syms[i].name,
					    (uint64_t *)((char *)&lay + syms[i].at));
		if (ret) {
			snprintf(err, err_len, "pid %d: %s not found in %s", pp->pid,
				 syms[i].name, pp->interp_path);
			return ret;
		}
	}
	if (bpf_map__update_elem(pe->skel->maps.layouts, &tgid, sizeof(tgid), &lay,
				 sizeof(lay), BPF_ANY)) {
		ret = -errno;
		snprintf(err, err_len, "pid %d: updating the layouts map: %s", pp->pid,
			 strerror(errno));
		return ret;
	}
	return 0;
}

int probe_engine_get_layout(struct probe_engine *pe, pid_t pid,
			    struct pyprobe_layout *lay)
{
	__u32 tgid = (__u32)pid;

	if (bpf_map__lookup_elem(pe->skel->maps.layouts, &tgid, sizeof(tgid), lay,
				 sizeof(*lay), 0))
		return -errno;
	return 0;
}

int probe_engine_set_layout(struct probe_engine *pe, pid_t pid,
			    const struct pyprobe_layout *lay)
{
	__u32 tgid = (__u32)pid;

	if (bpf_map__update_elem(pe->skel->maps.layouts, &tgid, sizeof(tgid), lay,
				 sizeof(*lay), BPF_EXIST))
		return -errno;
	return 0;
}

void probe_engine_remove_process(struct probe_engine *pe, pid_t pid)
{
	__u32 tgid = (__u32)pid;

	bpf_map__delete_elem(pe->skel->maps.layouts, &tgid, sizeof(tgid), 0);
	for (int i = 0; i < pe->nlinks; i++) {
		if (pe->links[i].pid != pid)
			continue;
		bpf_link__destroy(pe->links[i].link);
		pe->links[i--] = pe->links[--pe->nlinks];
	}
}

/* Room for one more link, and prog loaded: 0, or -errno with err. */
static int can_attach(struct probe_engine *pe, struct bpf_program *prog, char *err,
		      size_t err_len)
{
	if (pe->nlinks == MAX_LINKS) {
		snprintf(err, err_len, "too many attached processes");
		return -ENOSPC;
	}
	if (bpf_program__fd(prog) < 0) {
		snprintf(err, err_len, "BPF program %s is not loaded in this mode",
			 bpf_program__name(prog));
		return -EINVAL;
	}
	return 0;
}

static void keep_link(struct probe_engine *pe, pid_t pid, struct bpf_link *link)
{
	pe->links[pe->nlinks].pid = pid;
	pe->links[pe->nlinks++].link = link;
}

static int attach(struct probe_engine *pe, struct bpf_program *prog, pid_t pid,
		  const char *path, uint64_t offset, char *err, size_t err_len)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts);
	struct bpf_link *link;
	int ret = can_attach(pe, prog, err, err_len);

	if (ret)
		return ret;
	link = bpf_program__attach_uprobe_opts(prog, pid, path, offset, &opts);
	if (!link) {
		ret = -errno;
		snprintf(err, err_len, "pid %d: attaching the uprobe to %s+0x%llx: %s",
			 pid, path, (unsigned long long)offset, strerror(-ret));
		return ret;
	}
	keep_link(pe, pid, link);
	return 0;
}

static int uprobe_pmu_type(void)
{
	static int type = -1;
	FILE *f;

	if (type >= 0)
		return type;
	f = fopen("/sys/bus/event_source/devices/uprobe/type", "re");
	if (!f)
		return -errno;
	if (fscanf(f, "%d", &type) != 1)
		type = -1;
	fclose(f);
	return type >= 0 ? type : -EINVAL;
}

int probe_engine_open_hook_event(const struct helper_client *hc, char *err,
				 size_t err_len)
{
	struct perf_event_attr attr = { .size = sizeof(attr) };
	int type = uprobe_pmu_type(), fd;
	char path[96];

	if (type < 0) {
		snprintf(err, err_len, "the kernel has no uprobe PMU: %s", strerror(-type));
		return type;
	}
	/* The helper's memfd, named by the kernel's own map_files link. */
	snprintf(path, sizeof(path), "/proc/%d/map_files/%llx-%llx", hc->pid,
		 (unsigned long long)hc->map_start, (unsigned long long)hc->map_end);
	attr.type = (__u32)type;
	attr.config1 = (__u64)(uintptr_t)path;
	attr.config2 = hc->hook_file_offset;
	fd = (int)syscall(SYS_perf_event_open, &attr, hc->pid, -1, -1, PERF_FLAG_FD_CLOEXEC);
	if (fd < 0) {
		fd = -errno;
		snprintf(err, err_len, "pid %d: creating the uprobe on %s+0x%llx: %s", hc->pid,
			 path, (unsigned long long)hc->hook_file_offset, strerror(-fd));
	}
	return fd;
}

int probe_engine_attach_hook(struct probe_engine *pe, const struct helper_client *hc,
			     int event_fd, char *err, size_t err_len)
{
	struct bpf_program *prog = pe->skel->progs.pydi_hook;
	struct bpf_link *link;
	int ret;

	if (event_fd < 0)
		event_fd = probe_engine_open_hook_event(hc, err, err_len);
	if (event_fd < 0)
		return event_fd;
	ret = can_attach(pe, prog, err, err_len);
	link = ret ? NULL : bpf_program__attach_perf_event(prog, event_fd);
	if (!link) {
		if (!ret) {
			ret = -errno;
			snprintf(err, err_len, "pid %d: attaching BPF to the helper's uprobe: %s",
				 hc->pid, strerror(-ret));
		}
		close(event_fd);
		return ret;
	}
	keep_link(pe, hc->pid, link);
	return 0;
}

int probe_engine_attach_eval_frame(struct probe_engine *pe, struct pyproc *pp,
				   char *err, size_t err_len)
{
	const struct map_entry *interp = NULL, *text = NULL;
	struct proc_maps maps;
	uint64_t addr, offset = 0;
	char path[96];
	int ret;

	ret = proc_maps_read(pp->pid, &maps);
	if (ret)
		return ret;
	for (size_t i = 0; i < maps.count; i++)
		if (maps.entries[i].start == pp->interp_map_start)
			interp = &maps.entries[i];
	ret = interp ? mapped_elf_symbol(pp->pid, &maps, interp,
					 "_PyEval_EvalFrameDefault", &addr, NULL) : -ENOENT;
	if (!ret) {
		text = proc_maps_find(&maps, addr);
		if (!text || text->inode != interp->inode)
			ret = -ENOENT;
		else
			offset = text->offset + (addr - text->start);
	}
	if (ret) {
		snprintf(err, err_len, "pid %d: _PyEval_EvalFrameDefault not found", pp->pid);
		proc_maps_free(&maps);
		return ret;
	}
	/* Through map_files, never the interpreter's path in the container. */
	mapped_file_path(pp->pid, text, path, sizeof(path));
	proc_maps_free(&maps);
	return attach(pe, pe->skel->progs.pydi_eval_frame, pp->pid, path, offset,
		      err, err_len);
}

int probe_engine_set_probe(struct probe_engine *pe,
			   const struct pyprobe_key *key,
			   const struct pyprobe_config *cfg)
{
	if (bpf_map__update_elem(pe->skel->maps.probes, key, sizeof(*key), cfg,
				 sizeof(*cfg), BPF_ANY))
		return -errno;
	return 0;
}

int probe_engine_del_probe(struct probe_engine *pe,
			   const struct pyprobe_key *key)
{
	if (bpf_map__delete_elem(pe->skel->maps.probes, key, sizeof(*key), 0))
		return -errno;
	return 0;
}

int probe_engine_stats(struct probe_engine *pe, uint32_t slot,
		       struct pyprobe_stats *st)
{
	if (bpf_map__lookup_elem(pe->skel->maps.stats, &slot, sizeof(slot), st,
				 sizeof(*st), 0))
		return -errno;
	return 0;
}

int probe_engine_reset_stats(struct probe_engine *pe, uint32_t slot)
{
	struct pyprobe_stats zero = { 0 };

	if (bpf_map__update_elem(pe->skel->maps.stats, &slot, sizeof(slot), &zero,
				 sizeof(zero), BPF_ANY))
		return -errno;
	return 0;
}

int probe_engine_fd(struct probe_engine *pe)
{
	return ring_buffer__epoll_fd(pe->rb);
}

int probe_engine_poll(struct probe_engine *pe, int timeout_ms)
{
	int n;

	pe->poll_deadline = monotonic_ns() + (uint64_t)timeout_ms * 1000000ull +
			    POLL_BUDGET_NS;
	pe->polled = 0;
	pe->over_budget = false;
	n = ring_buffer__poll(pe->rb, timeout_ms);
	if (pe->over_budget)
		return pe->polled;
	return n == -EINTR ? 0 : n;
}

int probe_engine_drain(struct probe_engine *pe, int budget_ms)
{
	uint64_t end = monotonic_ns() + (uint64_t)budget_ms * 1000000ull;
	int n, total = 0;

	do {
		n = probe_engine_poll(pe, 0);
		if (n < 0)
			return n;
		total += n;
	} while (pe->over_budget && monotonic_ns() < end);
	return total;
}
