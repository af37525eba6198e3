// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "procmaps.h"
#include "pythreads.h"

static int main_interpreter(struct pyproc *pp, uint64_t *interp)
{
	int err = mem_read_u64(&pp->reader,
			       pp->runtime_addr + pp->offsets.runtime_interpreters_head,
			       interp);

	if (!err && !*interp)
		err = -ENOENT;
	return err;
}

/*
 * native_thread_id is the tid in the target's own pid namespace; map it to
 * ours through /proc/PID/task/TID/status NSpid (last field = innermost).
 */
static pid_t host_tid(pid_t pid, long ns_tid)
{
	struct dirent *de;
	char path[96];
	pid_t found = -1;
	DIR *dir;

	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	dir = opendir(path);
	if (!dir)
		return -1;
	while ((de = readdir(dir)) && found < 0) {
		char status_path[300], *text, *line, *last;
		size_t len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(status_path, sizeof(status_path), "/proc/%d/task/%s/status",
			 pid, de->d_name);
		if (read_file_bounded(status_path, 1 << 16, &text, &len))
			continue;
		line = strstr(text, "\nNSpid:");
		if (line) {
			line = strtok(line + 7, "\n");
			last = line ? strrchr(line, '\t') : NULL;
			if (!last && line)
				last = line;
			if (last && strtol(last, NULL, 10) == ns_tid)
				found = atoi(de->d_name);
		}
		free(text);
	}
	closedir(dir);
	return found;
}

int py_threads_list(struct pyproc *pp, struct py_thread *threads, size_t max,
		    size_t *count)
{
	const struct py_offsets *off = &pp->offsets;
	uint64_t interp, tstate;
	size_t n = 0;
	int err;

	err = main_interpreter(pp, &interp);
	if (err)
		return err;
	err = mem_read_u64(&pp->reader, interp + off->interp_threads_head, &tstate);
	if (err)
		return err;
	while (tstate && n < max && n < PY_THREADS_MAX) {
		uint64_t native_id;

		err = mem_read_u64(&pp->reader,
				   tstate + off->tstate_native_thread_id, &native_id);
		if (err)
			return err;
		threads[n].tstate = tstate;
		threads[n].tid = pp->other_pid_ns ?
			host_tid(pp->pid, (long)native_id) : (pid_t)native_id;
		n++;
		err = mem_read_u64(&pp->reader, tstate + off->tstate_next, &tstate);
		if (err)
			return err;
	}
	*count = n;
	return 0;
}

int py_gil_holder(struct pyproc *pp, uint64_t *tstate)
{
	const struct py_offsets *off = &pp->offsets;
	uint64_t interp, gil;
	uint32_t locked;
	int err;

	*tstate = 0;
	if (off->runtime_gilstate_tstate_current != PY_OFF_NONE)
		return mem_read_u64(&pp->reader,
				    pp->runtime_addr + off->runtime_gilstate_tstate_current,
				    tstate);
	if (off->interp_ceval_gil == PY_OFF_NONE)
		return -ENOTSUP;
	err = main_interpreter(pp, &interp);
	if (!err)
		err = mem_read_u64(&pp->reader, interp + off->interp_ceval_gil, &gil);
	if (!err)
		err = mem_read_u32(&pp->reader, gil + off->gil_locked, &locked);
	if (err)
		return err;
	if (!locked)
		return 0;
	return mem_read_u64(&pp->reader, gil + off->gil_last_holder, tstate);
}

int thread_syscall(pid_t pid, pid_t tid, long *nr)
{
	char path[96], *text;
	size_t len;
	int err;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/syscall", pid, tid);
	err = read_file_bounded(path, 4096, &text, &len);
	if (err)
		return err;
	*nr = strncmp(text, "running", 7) == 0 ? -1 : strtol(text, NULL, 10);
	free(text);
	return 0;
}
