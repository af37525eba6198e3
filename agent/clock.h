/* SPDX-License-Identifier: MIT */
/* CLOCK_MONOTONIC: what BPF's bpf_ktime_get_ns and the helper's gate use. */
#ifndef PYDI_CLOCK_H
#define PYDI_CLOCK_H

#include <stdint.h>
#include <time.h>

static inline uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t monotonic_ms(void)
{
	return monotonic_ns() / 1000000;
}

/* A timer: keep the earlier of *due and t. */
static inline void due_at(uint64_t *due, uint64_t t)
{
	if (t < *due)
		*due = t;
}

#endif /* PYDI_CLOCK_H */
