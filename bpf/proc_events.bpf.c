// SPDX-License-Identifier: GPL-2.0
/*
 * Tell the agent when a process execs or exits, so discovery reacts within
 * milliseconds instead of rescanning /proc in a loop.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "proc_events.h"

#define PROC_EVENTS_RINGBUF_BYTES (64 * 1024)

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, PROC_EVENTS_RINGBUF_BYTES);
} proc_events SEC(".maps");

/* Events the ring buffer had no room for; the agent rescans when it grows. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} proc_events_dropped SEC(".maps");

static __always_inline void emit_task(__u32 kind, struct task_struct *task)
{
	struct pydi_proc_event *e;
	__u32 zero = 0;
	__u64 *dropped;

	e = bpf_ringbuf_reserve(&proc_events, sizeof(*e), 0);
	if (!e) {
		dropped = bpf_map_lookup_elem(&proc_events_dropped, &zero);
		if (dropped)
			__sync_fetch_and_add(dropped, 1);
		return;
	}
	e->kind = kind;
	e->pid = BPF_CORE_READ(task, tgid);
	e->start_time_ns = BPF_CORE_READ(task, group_leader, start_time);
	bpf_ringbuf_submit(e, 0);
}


/* BTF-enabled tracepoints: no tracefs needed (a container may lack it). */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_exec, struct task_struct *task)
{
	emit_task(PYDI_PROC_EXEC, task);
	return 0;
}

/* Forking servers (gunicorn) make workers without exec. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(handle_fork, struct task_struct *parent, struct task_struct *child)
{
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;	/* a thread */
	emit_task(PYDI_PROC_FORK, child);
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(handle_exit, struct task_struct *task)
{
	/* Only the leader's exit ends the process as /proc shows it. */
	if (BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid))
		return 0;
	emit_task(PYDI_PROC_EXIT, task);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
