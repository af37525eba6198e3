/* SPDX-License-Identifier: MIT */
/*
 * Loading the helper into a live target, once. Policy (DESIGN "Helper in"):
 * borrow a thread parked in an allowlisted syscall with its thread state
 * detached and call in under PyGILState_Ensure; only a single-threaded
 * process busy in Python gets Py_AddPendingCall, queued while its thread is
 * inside the eval loop. The helper travels as bytes into a memfd created in
 * the target and loads from /proc/self/fd/N.
 */
#ifndef PYDI_INJECT_H
#define PYDI_INJECT_H

#include <stdbool.h>
#include <stddef.h>

#include "helper_client.h"
#include "pyproc.h"

enum inject_path {
	INJECT_REUSED = 0,	/* the helper was already there */
	INJECT_GIL_FREE,	/* a parked thread was borrowed */
	INJECT_PENDING_CALL,	/* queued on the busy main thread */
};

struct inject_result {
	enum inject_path path;
	pid_t tid;		/* the thread used */
	long syscall_nr;	/* what it was parked in (GIL-free path) */
	double elapsed_ms;
};

const char *inject_path_name(enum inject_path path);

/*
 * Make sure the helper is loaded in pp's process and ready; fill hc to talk
 * to it. 0 or a negative errno, with a one-line reason in err.
 */
int inject_helper(struct pyproc *pp, struct helper_client *hc,
		  struct inject_result *res, char *err, size_t err_len);

#endif /* PYDI_INJECT_H */
