/* SPDX-License-Identifier: MIT */
/*
 * The native side of hooking: the per-slot gates, the entry points hooked
 * code calls (3.11: _hook from inserted bytecode; 3.12+: sys.monitoring
 * callbacks), and the code table those callbacks look code objects up in.
 * Everything that runs per hit is here and allocates nothing, calls no
 * Python and raises nothing (the test-only recording mode aside).
 */
#ifndef PYDI_HOOK_H
#define PYDI_HOOK_H

#include "helper.h"

/*
 * The hook point BPF attaches to (assembly in helper.c: a 5-byte NOP, then
 * ret). tstate is the caller's thread state: its current frame is the
 * probed function's frame, because the callers (a builtin called from
 * inserted bytecode on 3.11, a sys.monitoring callback on 3.12+) push no
 * interpreter frame of their own.
 */
void pydi_hook_event(void *tstate, uint64_t slot, int64_t line,
		     int64_t event, void *value);

/* Add the hook functions to the module and publish the gates and the hook
 * address in pydi_helper_state. 0, or -1 with an exception set. */
int hook_module_init(PyObject *module);

#endif /* PYDI_HOOK_H */
