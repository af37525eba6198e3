/* SPDX-License-Identifier: MIT */
/* The Python threads of a target and who holds the GIL, from outside. */
#ifndef PYDI_PYTHREADS_H
#define PYDI_PYTHREADS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "pyproc.h"

#define PY_THREADS_MAX 4096

struct py_thread {
	pid_t tid;		/* native thread id (host pid namespace) */
	uint64_t tstate;
};

/* The main interpreter's thread states; tids translated to our pid
 * namespace. 0 or a negative errno. */
int py_threads_list(struct pyproc *pp, struct py_thread *threads, size_t max,
		    size_t *count);

/* The thread state holding the GIL (0 if none). */
int py_gil_holder(struct pyproc *pp, uint64_t *tstate);

/* What a thread is doing: its syscall number if blocked in one (-1 if
 * running in user space), from /proc/PID/task/TID/syscall. */
int thread_syscall(pid_t pid, pid_t tid, long *nr);

#endif /* PYDI_PYTHREADS_H */
