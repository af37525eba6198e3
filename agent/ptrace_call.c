// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "ptrace_call.h"

/* The System V ABI lets leaf functions use 128 bytes below rsp. */
#define RED_ZONE 128
/* Room left between the interrupted frame and ours, in case the thread
 * was stopped between adjusting rsp and using it. */
#define STACK_GAP 256
/* A return to this address faults: that fault is our "call returned". */
#define RETURN_TRAP 0

/* Wait for the thread to stop: 0 with *status, -ESRCH, -ETIMEDOUT. */
static int wait_stop(pid_t tid, int *status, int timeout_ms)
{
	uint64_t deadline = monotonic_ms() + (uint64_t)timeout_ms;

	for (;;) {
		pid_t r = waitpid(tid, status, __WALL | WNOHANG);

		if (r == tid) {
			if (WIFEXITED(*status) || WIFSIGNALED(*status))
				return -ESRCH;
			return 0;
		}
		if (r < 0 && errno != EINTR)
			return -errno;
		if (monotonic_ms() >= deadline)
			return -ETIMEDOUT;
		usleep(200);
	}
}

static int save_state(struct pt_thread *t)
{
	struct iovec iov = { .iov_base = t->xstate, .iov_len = sizeof(t->xstate) };

	if (ptrace(PTRACE_GETREGS, t->tid, NULL, &t->saved_regs))
		return -errno;
	if (ptrace(PTRACE_GETREGSET, t->tid, (void *)NT_X86_XSTATE, &iov))
		return -errno;
	t->xstate_len = iov.iov_len;
	t->stack_top = t->saved_regs.rsp - RED_ZONE - STACK_GAP;
	t->regs_dirty = false;
	return 0;
}

static bool is_event_stop(int status)
{
	return (status >> 16) == PTRACE_EVENT_STOP;
}

/* Wait until the thread is in an interrupt/event stop, deferring signals. */
static int wait_interrupt_stop(struct pt_thread *t, int timeout_ms)
{
	for (;;) {
		int status, err = wait_stop(t->tid, &status, timeout_ms);

		if (err)
			return err;
		if (is_event_stop(status))
			return 0;
		/* A signal arrived first: hold it back, keep waiting. */
		if (WIFSTOPPED(status) && t->ndeferred < PT_MAX_DEFERRED_SIGNALS)
			t->deferred[t->ndeferred++] = WSTOPSIG(status);
		if (ptrace(PTRACE_CONT, t->tid, NULL, NULL))
			return -errno;
	}
}

int pt_attach(struct pt_thread *t, pid_t pid, pid_t tid, int timeout_ms)
{
	int err;

	memset(t, 0, sizeof(*t));
	t->pid = pid;
	t->tid = tid;
	if (ptrace(PTRACE_SEIZE, tid, NULL, NULL))
		return -errno;
	t->seized = true;
	if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL)) {
		err = -errno;
		goto fail;
	}
	err = wait_interrupt_stop(t, timeout_ms);
	if (err)
		goto fail;
	err = save_state(t);
	if (err)
		goto fail;
	return 0;
fail:
	/* Nothing was changed: a plain detach leaves the thread as it was. */
	ptrace(PTRACE_DETACH, tid, NULL, NULL);
	t->seized = false;
	return err;
}

int pt_resume_and_stop(struct pt_thread *t, int run_us, int timeout_ms)
{
	int err;

	if (t->regs_dirty)
		return -EBUSY;
	if (ptrace(PTRACE_CONT, t->tid, NULL, NULL))
		return -errno;
	usleep((useconds_t)run_us);
	if (ptrace(PTRACE_INTERRUPT, t->tid, NULL, NULL))
		return -errno;
	err = wait_interrupt_stop(t, timeout_ms);
	return err ? err : save_state(t);
}

int pt_write_mem(pid_t pid, uint64_t addr, const void *buf, size_t len)
{
	struct iovec local = { .iov_base = (void *)buf, .iov_len = len };
	struct iovec remote = { .iov_base = (void *)(uintptr_t)addr, .iov_len = len };
	char path[64];
	ssize_t n;
	int fd;

	n = process_vm_writev(pid, &local, 1, &remote, 1, 0);
	if (n == (ssize_t)len)
		return 0;
	/* Read-only or guarded pages, or process_vm_writev refused: the
	 * kernel's /proc/PID/mem writes through (ptrace access). */
	snprintf(path, sizeof(path), "/proc/%d/mem", pid);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = pwrite(fd, buf, len, (off_t)addr);
	close(fd);
	if (n < 0)
		return -errno;
	return n == (ssize_t)len ? 0 : -EFAULT;
}

int pt_push(struct pt_thread *t, const void *data, size_t len, uint64_t *addr)
{
	uint64_t at = (t->stack_top - len) & ~(uint64_t)15;
	int err = pt_write_mem(t->pid, at, data, len);

	if (err)
		return err;
	t->stack_top = at;
	*addr = at;
	return 0;
}

int pt_call(struct pt_thread *t, uint64_t fn, const uint64_t *args, int nargs,
	    uint64_t *ret, int timeout_ms)
{
	struct user_regs_struct regs = t->saved_regs;
	uint64_t trap = RETURN_TRAP, sp;
	int err;

	if (!t->seized || nargs > 6)
		return -EINVAL;
	/* At function entry rsp + 8 must be 16-byte aligned: the return
	 * address sits at an address that is 8 mod 16. */
	sp = ((t->stack_top - 64) & ~(uint64_t)15) - 8;
	err = pt_write_mem(t->pid, sp, &trap, sizeof(trap));
	if (err)
		return err;

	regs.rsp = sp;
	regs.rip = fn;
	regs.rax = 0;		/* no vector registers used by varargs */
	regs.orig_rax = -1;	/* not in a syscall: no restart on resume */
	regs.rdi = nargs > 0 ? args[0] : 0;
	regs.rsi = nargs > 1 ? args[1] : 0;
	regs.rdx = nargs > 2 ? args[2] : 0;
	regs.rcx = nargs > 3 ? args[3] : 0;
	regs.r8 = nargs > 4 ? args[4] : 0;
	regs.r9 = nargs > 5 ? args[5] : 0;
	regs.eflags &= ~(1ull << 10);	/* the ABI wants DF clear */
	if (ptrace(PTRACE_SETREGS, t->tid, NULL, &regs))
		return -errno;
	t->regs_dirty = true;
	if (ptrace(PTRACE_CONT, t->tid, NULL, NULL))
		return -errno;

	for (;;) {
		int status, sig;

		err = wait_stop(t->tid, &status, timeout_ms);
		if (err)
			return err;
		if (is_event_stop(status)) {
			/* Group stop or a stray interrupt: keep running the call. */
			if (ptrace(PTRACE_CONT, t->tid, NULL, NULL))
				return -errno;
			continue;
		}
		sig = WSTOPSIG(status);
		if (sig == SIGSEGV) {
			if (ptrace(PTRACE_GETREGS, t->tid, NULL, &regs))
				return -errno;
			if (regs.rip == RETURN_TRAP) {
				*ret = regs.rax;
				return 0;
			}
			return -EFAULT;	/* the called function crashed */
		}
		if (t->ndeferred < PT_MAX_DEFERRED_SIGNALS)
			t->deferred[t->ndeferred++] = sig;
		if (ptrace(PTRACE_CONT, t->tid, NULL, NULL))
			return -errno;
	}
}

int pt_detach(struct pt_thread *t)
{
	struct iovec iov = { .iov_base = t->xstate, .iov_len = t->xstate_len };
	int err = 0;

	if (!t->seized)
		return 0;
	if (t->regs_dirty) {
		if (ptrace(PTRACE_SETREGS, t->tid, NULL, &t->saved_regs) ||
		    ptrace(PTRACE_SETREGSET, t->tid, (void *)NT_X86_XSTATE, &iov))
			err = -errno;
		t->regs_dirty = false;
	}
	if (ptrace(PTRACE_DETACH, t->tid, NULL, NULL) && !err)
		err = -errno;
	t->seized = false;
	for (int i = 0; i < t->ndeferred; i++)
		syscall(SYS_tgkill, t->pid, t->tid, t->deferred[i]);
	t->ndeferred = 0;
	return err;
}
