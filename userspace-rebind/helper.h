/* SPDX-License-Identifier: MIT */
/* Internals shared by the helper's module and its control thread. */
#ifndef PYDI_HELPER_H
#define PYDI_HELPER_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <time.h>

#include "helper_abi.h"

#define PYDI_HELPER_VERSION "0.1.0"

extern struct pydi_helper_state pydi_helper_state;

/* CLOCK_MONOTONIC, the clock of the lease and the gates (and of BPF). */
static inline uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Start the control thread (eventfds included): 0 or -errno. With first, the
 * thread runs it under the GIL before any command while the caller (GIL
 * held) waits with the GIL released: what first allocates lands in the
 * thread's own malloc arena, not the app's main one. first returns 0, or -1
 * with an exception: control_start then stops the thread, sets that
 * exception on the caller's thread and returns -ECANCELED. */
int control_start(int (*first)(void));
/* Stop it and wait for it; call with the GIL held (it is released while
 * waiting). */
void control_stop(void);
/* In a forked child: the thread did not survive the fork; start anew. */
int control_after_fork(void);

/* Run one command through _pydi_boot.dispatch; the GIL must be held.
 * Returns a new reference to the reply str, or NULL with an exception. */
PyObject *helper_dispatch(const char *cmd, size_t len);

#endif /* PYDI_HELPER_H */
