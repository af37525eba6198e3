/* SPDX-License-Identifier: MIT */
/*
 * Calling functions inside another process's thread with ptrace: seize and
 * stop one thread, save every register (XSAVE area included), run calls on
 * its stack below the red zone with a trapped return address, restore,
 * detach. Pure mechanism: which thread and which calls is inject.c's policy.
 */
#ifndef PYDI_PTRACE_CALL_H
#define PYDI_PTRACE_CALL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#define PT_MAX_DEFERRED_SIGNALS 16
#define PT_XSTATE_MAX 16384

struct pt_thread {
	pid_t pid;
	pid_t tid;
	bool seized;
	bool regs_dirty;		/* registers differ from saved_regs */
	struct user_regs_struct saved_regs;
	uint8_t xstate[PT_XSTATE_MAX];
	size_t xstate_len;
	uint64_t stack_top;		/* lowest address handed out by pt_push */
	int deferred[PT_MAX_DEFERRED_SIGNALS];	/* signals to re-deliver */
	int ndeferred;
};

/* Seize tid of pid, interrupt it and wait for the stop; save its registers.
 * 0, or -ESRCH (gone), -EPERM (ptrace refused), -ETIMEDOUT. */
int pt_attach(struct pt_thread *t, pid_t pid, pid_t tid, int timeout_ms);

/* Let the thread run for a moment and stop it again (to catch it at a
 * better point); registers are saved afresh. */
int pt_resume_and_stop(struct pt_thread *t, int run_us, int timeout_ms);

/* Copy len bytes onto the thread's stack below the red zone (and below
 * anything pushed before): returns the address in *addr. */
int pt_push(struct pt_thread *t, const void *data, size_t len, uint64_t *addr);

/* Call fn(args...) (at most 6 integer arguments) on the thread; *ret gets
 * rax. The call must return to the trap; a crash inside it is -EFAULT. */
int pt_call(struct pt_thread *t, uint64_t fn, const uint64_t *args, int nargs,
	    uint64_t *ret, int timeout_ms);

/* Restore the saved registers and detach, re-delivering any signal that
 * arrived during the calls. Always safe to call (no-op if not seized). */
int pt_detach(struct pt_thread *t);

/* Instruction pointer and syscall number (orig_rax) at the stop. */
static inline uint64_t pt_ip(const struct pt_thread *t)
{
	return t->saved_regs.rip;
}

/* Write into the target's memory: process_vm_writev, else /proc/PID/mem. */
int pt_write_mem(pid_t pid, uint64_t addr, const void *buf, size_t len);

#endif /* PYDI_PTRACE_CALL_H */
