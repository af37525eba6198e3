/* SPDX-License-Identifier: MIT */
/*
 * Finding a function's code object by reading a target's memory, without
 * the helper: sys.modules -> module dict -> (class dict) -> function ->
 * code. For --no-inject mode, which cannot run anything in the target.
 * Handles module-level functions and methods of classes (one level).
 */
#ifndef PYDI_MEMRESOLVE_H
#define PYDI_MEMRESOLVE_H

#include <stddef.h>
#include <stdint.h>

#include "pyproc.h"

/*
 * Resolve "module:qualname" to a code object address. 0, or -ENOENT with
 * a reason in err (module not loaded, name missing, not a Python function).
 */
int memresolve_code(struct pyproc *pp, const char *target, uint64_t *code,
		    char *err, size_t err_len);

/* Look name up in the str-keyed dict at dict_addr: 0 with *value, or
 * -ENOENT. */
int memresolve_dict_get(struct pyproc *pp, uint64_t dict_addr, const char *name,
			uint64_t *value);

#endif /* PYDI_MEMRESOLVE_H */
