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
 * ret). The probed function's frame is the thread's current frame, because
 * the callers (a builtin called from inserted bytecode on 3.11, a
 * sys.monitoring callback on 3.12+) push no interpreter frame of their own.
 * With frame offsets the hook passes that frame and its code; without
 * (frame 0) it passes the thread state, and BPF finds both from it.
 */
void pydi_hook_event(uint64_t code_or_tstate, uint64_t slot, int64_t line,
		     int64_t event, void *value, uint64_t frame);

/* Add the hook functions to the module and publish the gates, the hook's
 * address, the ends ring and the small ints in pydi_helper_state. 0, or -1
 * with an exception set. */
int hook_module_init(PyObject *module);

/* In a forked child: disarm every inherited gate. The uprobes belong to
 * the parent, and a 6.18 optimized uprobe is a call into the parent's
 * trampoline page, which the child may not have: only the agent, once it
 * has attached to the child, may arm its gates again. */
void hook_after_fork(void);

#endif /* PYDI_HOOK_H */
