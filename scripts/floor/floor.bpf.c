// SPDX-License-Identifier: GPL-2.0
/*
 * At a call's entry: the probe-map lookup, the clock, the frame's three
 * argument slots in one read and each argument object's first 64 bytes in
 * one, written straight into the ring buffer. At its end: the lookup, the
 * clock and a header. No wakeup: the consumer polls.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "floor.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct floor_key);
	__type(value, __u64);
} probes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 << 20);
} events SEC(".maps");

const volatile int mode = FLOOR_EMPTY;
__u64 reserve_failed = 0;

static __always_inline __u64 header(struct floor_key *k, __u32 event, __u64 frame,
				    __u64 *slot)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	__u64 *cfg;

	k->tgid = pid_tgid >> 32;
	k->event = event;
	k->code = frame;
	cfg = bpf_map_lookup_elem(&probes, k);
	*slot = cfg ? *cfg : 0;
	return pid_tgid;
}

SEC("uprobe")
int BPF_KPROBE(floor_entry, __u64 frame)
{
	struct floor_key k = {};
	struct floor_entry *e;
	__u64 pid_tgid, slot;

	if (mode != FLOOR_CAPTURE)
		return 0;
	pid_tgid = header(&k, 1, frame, &slot);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&reserve_failed, 1);
		return 0;
	}
	e->header[0] = pid_tgid;
	e->header[1] = bpf_ktime_get_ns();
	e->header[2] = slot;
	e->header[3] = frame;
	bpf_probe_read_user(e->slots, sizeof(e->slots), (const void *)frame);
	for (int i = 0; i < 3; i++)
		bpf_probe_read_user(e->heads[i], sizeof(e->heads[i]),
				    (const void *)e->slots[i]);
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(floor_end, __u64 frame)
{
	struct floor_key k = {};
	struct floor_end *e;
	__u64 pid_tgid, slot;

	if (mode != FLOOR_CAPTURE)
		return 0;
	pid_tgid = header(&k, 2, frame, &slot);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		__sync_fetch_and_add(&reserve_failed, 1);
		return 0;
	}
	e->header[0] = pid_tgid;
	e->header[1] = bpf_ktime_get_ns();
	e->header[2] = slot;
	e->header[3] = frame;
	bpf_ringbuf_submit(e, BPF_RB_NO_WAKEUP);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
