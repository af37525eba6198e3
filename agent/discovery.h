/* SPDX-License-Identifier: MIT */
/*
 * Which processes exist, and when that changes: a BPF program on exec,
 * fork and exit (bpf/proc_events) tells the agent within milliseconds, and
 * a /proc scan is the backstop (at start, periodically, and whenever the
 * event ring buffer overflowed).
 */
#ifndef PYDI_DISCOVERY_H
#define PYDI_DISCOVERY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct discovery;

enum discovery_event {
	DISCOVERY_NEW,		/* fork, or found by a scan */
	DISCOVERY_EXEC,		/* a new image: whatever was there is gone */
	DISCOVERY_GONE,
};

typedef void (*discovery_fn)(void *ctx, pid_t pid, enum discovery_event ev);

/* Load the BPF side. Without it (-errno, err says why) the agent still
 * works from periodic scans. */
int discovery_open(struct discovery **out, discovery_fn fn, void *ctx,
		   char *err, size_t err_len);
void discovery_close(struct discovery *d);
int discovery_fd(const struct discovery *d);	/* epoll-able, or -1 */
/* Deliver waiting events. True if events were lost (rescan). */
bool discovery_consume(struct discovery *d);

/* Call fn(ctx, pid, DISCOVERY_NEW) for every process in /proc. */
int discovery_scan(discovery_fn fn, void *ctx);

#endif /* PYDI_DISCOVERY_H */
