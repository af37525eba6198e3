// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <bpf/libbpf.h>
#include <bpf/bpf.h>

#include "discovery.h"
#include "errbuf.h"
#include "proc_events.h"
#include "proc_events.skel.h"

struct discovery {
	struct proc_events *skel;
	struct ring_buffer *rb;
	discovery_fn fn;
	void *ctx;
	uint64_t dropped_seen;
};

static int on_event(void *ctx, void *data, size_t size)
{
	struct discovery *d = ctx;
	const struct pydi_proc_event *e = data;

	if (size < sizeof(*e))
		return 0;
	d->fn(d->ctx, (pid_t)e->pid, e->kind == PYDI_PROC_EXIT ? DISCOVERY_GONE :
				      e->kind == PYDI_PROC_EXEC ? DISCOVERY_EXEC : DISCOVERY_NEW);
	return 0;
}

int discovery_open(struct discovery **out, discovery_fn fn, void *ctx,
		   char *err, size_t err_len)
{
	struct discovery *d = calloc(1, sizeof(*d));
	int ret;

	if (!d)
		return -ENOMEM;
	d->fn = fn;
	d->ctx = ctx;
	d->skel = proc_events__open_and_load();
	if (!d->skel) {
		ret = -errno;
		set_err(err, err_len, "loading the process-events BPF program: %s",
			strerror(errno));
		goto fail;
	}
	ret = proc_events__attach(d->skel);
	if (ret) {
		set_err(err, err_len, "attaching the process-events tracepoints: %s",
			strerror(-ret));
		goto fail;
	}
	d->rb = ring_buffer__new(bpf_map__fd(d->skel->maps.proc_events), on_event, d, NULL);
	if (!d->rb) {
		ret = -errno;
		set_err(err, err_len, "process-events ring buffer: %s", strerror(errno));
		goto fail;
	}
	*out = d;
	return 0;
fail:
	discovery_close(d);
	return ret;
}

void discovery_close(struct discovery *d)
{
	if (!d)
		return;
	ring_buffer__free(d->rb);
	proc_events__destroy(d->skel);
	free(d);
}

int discovery_fd(const struct discovery *d)
{
	return d && d->rb ? ring_buffer__epoll_fd(d->rb) : -1;
}

bool discovery_consume(struct discovery *d)
{
	uint64_t dropped = 0;
	uint32_t zero = 0;

	if (!d)
		return false;
	ring_buffer__consume(d->rb);
	bpf_map__lookup_elem(d->skel->maps.proc_events_dropped, &zero, sizeof(zero),
			     &dropped, sizeof(dropped), 0);
	if (dropped == d->dropped_seen)
		return false;
	d->dropped_seen = dropped;
	return true;
}

int discovery_scan(discovery_fn fn, void *ctx)
{
	DIR *dir = opendir("/proc");
	struct dirent *de;

	if (!dir)
		return -errno;
	while ((de = readdir(dir))) {
		char *end;
		long pid;

		if (!isdigit((unsigned char)de->d_name[0]))
			continue;
		pid = strtol(de->d_name, &end, 10);
		if (*end || pid <= 0)
			continue;
		fn(ctx, (pid_t)pid, DISCOVERY_NEW);
	}
	closedir(dir);
	return 0;
}
