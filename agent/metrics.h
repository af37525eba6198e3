/* SPDX-License-Identifier: MIT */
/*
 * Prometheus text exposition on a small HTTP listener of its own thread
 * (off by default, loopback by default). The agent publishes the whole
 * page; the listener only serves the latest copy.
 */
#ifndef PYDI_METRICS_H
#define PYDI_METRICS_H

struct metrics;

/* listen: "HOST:PORT" (e.g. "127.0.0.1:9464"). 0 or -errno with err. */
int metrics_start(struct metrics **out, const char *listen, char *err,
		  size_t err_len);
void metrics_publish(struct metrics *m, const char *text);	/* copied */
void metrics_stop(struct metrics *m);

#endif /* PYDI_METRICS_H */
