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

/*
 * Both events start with the same header: the lookup, the reservation and
 * the header's words. NULL (counted) when the ring buffer is full.
 */
static __always_inline __u64 *start_event(__u32 event, __u64 frame, __u64 size)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct floor_key k = {
		.tgid = pid_tgid >> 32, .event = event, .code = frame,
	};
	__u64 *cfg = bpf_map_lookup_elem(&probes, &k), *header;

	header = bpf_ringbuf_reserve(&events, size, 0);
	if (!header) {
		__sync_fetch_and_add(&reserve_failed, 1);
		return NULL;
	}
	header[0] = pid_tgid;
	header[1] = bpf_ktime_get_ns();
	header[2] = cfg ? *cfg : 0;
	header[3] = frame;
	return header;
}

SEC("uprobe")
int BPF_KPROBE(floor_entry, __u64 frame)
{
	struct floor_entry *e;

	if (mode != FLOOR_CAPTURE)
		return 0;
	e = (struct floor_entry *)start_event(1, frame, sizeof(*e));
	if (!e)
		return 0;
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
	__u64 *header;

	if (mode != FLOOR_CAPTURE)
		return 0;
	header = start_event(2, frame, sizeof(struct floor_end));
	if (header)
		bpf_ringbuf_submit(header, BPF_RB_NO_WAKEUP);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
