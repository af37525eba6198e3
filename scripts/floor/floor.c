// SPDX-License-Identifier: MIT
/*
 * floor MODE N: call two functions N times each, pinned to CPU 0, with
 * floor.bpf.c's programs on them (MODE: none, empty, capture); print the
 * nanoseconds per pair of calls and the events the ring buffer refused.
 * Each function starts with the 5-byte nop of pydi's hook point, which
 * the kernel's optimized uprobe turns into a call instead of a trap.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <bpf/libbpf.h>

#include "floor.h"
#include "floor.skel.h"

long floor_call_entry(long frame, long i);
long floor_call_end(long frame, long i);
__asm__(".text\n"
	".globl floor_call_entry\n.type floor_call_entry, @function\n"
	"floor_call_entry:\n\t.byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"
	"\tlea (%rdi,%rsi), %rax\n\tret\n"
	".size floor_call_entry, .-floor_call_entry\n"
	".globl floor_call_end\n.type floor_call_end, @function\n"
	"floor_call_end:\n\t.byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"
	"\tlea (%rdi,%rsi), %rax\n\tret\n"
	".size floor_call_end, .-floor_call_end\n");

/* A frame's argument slots, each pointing at a 64-byte "object". */
static unsigned long long objects[3][8] __attribute__((aligned(64)));
static unsigned long long frame[3];
static volatile int stop;

static int on_event(void *ctx, void *data, size_t size)
{
	(void)ctx;
	(void)data;
	(void)size;
	return 0;
}

static void *consume(void *arg)
{
	struct ring_buffer *rb = arg;

	while (!stop) {
		usleep(2000);
		ring_buffer__consume(rb);
	}
	return NULL;
}

static int attach(struct bpf_program *prog, const char *fn)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .func_name = fn);

	return bpf_program__attach_uprobe_opts(prog, 0, "/proc/self/exe", 0, &opts) ?
	       0 : -1;
}

int main(int argc, char **argv)
{
	struct floor_bpf *skel = NULL;
	struct ring_buffer *rb = NULL;
	struct timespec t0, t1;
	pthread_t consumer;
	cpu_set_t cpus;
	long n, sum = 0;
	int mode;

	if (argc != 3) {
		fprintf(stderr, "usage: %s none|empty|capture N\n", argv[0]);
		return 1;
	}
	mode = !strcmp(argv[1], "capture") ? FLOOR_CAPTURE :
	       !strcmp(argv[1], "empty") ? FLOOR_EMPTY : FLOOR_NONE;
	n = atol(argv[2]);
	for (int i = 0; i < 3; i++)
		frame[i] = (unsigned long long)(unsigned long)objects[i];
	if (mode != FLOOR_NONE) {
		skel = floor_bpf__open();
		if (!skel)
			return 2;
		skel->rodata->mode = mode;
		if (floor_bpf__load(skel) ||
		    attach(skel->progs.floor_entry, "floor_call_entry") ||
		    attach(skel->progs.floor_end, "floor_call_end")) {
			fprintf(stderr, "floor: loading or attaching failed\n");
			return 2;
		}
		rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_event, NULL, NULL);
		if (!rb || pthread_create(&consumer, NULL, consume, rb))
			return 2;
	}
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < n; i++) {
		sum += floor_call_entry((long)frame, i);
		sum += floor_call_end((long)frame, i);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("%.1f %llu %ld\n", ((t1.tv_sec - t0.tv_sec) * 1e9 +
				   (t1.tv_nsec - t0.tv_nsec)) / n,
	       skel ? (unsigned long long)skel->bss->reserve_failed : 0ULL, sum & 1);
	if (skel) {
		stop = 1;
		pthread_join(consumer, NULL);
		ring_buffer__free(rb);
		floor_bpf__destroy(skel);
	}
	return 0;
}
