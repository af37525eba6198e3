// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "errbuf.h"
#include "inject.h"
#include "memread.h"
#include "mapped_elf.h"
#include "procmaps.h"
#include "ptrace_call.h"
#include "pythreads.h"

extern const unsigned char pydi_helper_blob[];
extern const size_t pydi_helper_blob_len;

#define ATTACH_TIMEOUT_MS	2000
#define CALL_TIMEOUT_MS		10000	/* PyGILState_Ensure waits for the GIL */
#define READY_TIMEOUT_MS	5000	/* pending call: until the eval loop runs it */
#define BOOT_TIMEOUT_MS		10000	/* the helper's thread: the GIL, the bootstrap */
#define EVAL_LOOP_TRIES		500	/* stops to find the thread in the eval loop */
#define INJECT_LOCK_TIMEOUT_MS	30000	/* another pydi injecting the same target */
#define BORROW_PASSES		10	/* looks for a parked thread ... */
#define BORROW_RETRY_US		1000	/* ... this far apart */
#define BOOT_ERROR_MAX		400	/* bytes of the bootstrap's error we report */

/* Blocking syscalls a thread sits in with its thread state detached and no
 * lock held. Never futex: that thread may be waiting for the GIL, a malloc
 * arena or a PyMutex, and re-entering from there deadlocks. */
static const long parked_syscalls[] = {
	SYS_epoll_wait, SYS_epoll_pwait, SYS_poll, SYS_ppoll, SYS_select,
	SYS_pselect6, SYS_accept, SYS_accept4, SYS_recvfrom, SYS_read,
	SYS_clock_nanosleep, SYS_nanosleep, SYS_wait4,
#ifdef SYS_epoll_pwait2
	SYS_epoll_pwait2,
#endif
};

/* What rax holds while a thread sits stopped inside a blocking syscall. */
#define ERESTARTSYS		512
#define ERESTARTNOINTR		513
#define ERESTARTNOHAND		514
#define ERESTART_RESTARTBLOCK	516

struct target_syms {
	uint64_t gil_ensure, gil_release, run_string, add_pending;
	uint64_t eval_frame, eval_frame_size;
	uint64_t libc_syscall, libc_mmap;
	uint64_t libc_dlopen, libc_dlsym;	/* 0: libc older than 2.34 */
	/* The interpreter's executable mappings (PGO/LTO builds split the
	 * eval loop into unnamed hot and cold parts outside the symbol). */
	uint64_t text_start[4], text_end[4];
	int ntext;
};

const char *inject_path_name(enum inject_path path)
{
	switch (path) {
	case INJECT_GIL_FREE:
		return "gil-free";
	case INJECT_PENDING_CALL:
		return "pending-call";
	default:
		return "reused";
	}
}

static bool is_parked_syscall(long nr)
{
	for (size_t i = 0; i < sizeof(parked_syscalls) / sizeof(parked_syscalls[0]); i++)
		if (parked_syscalls[i] == nr)
			return true;
	return false;
}

static bool interrupted_in_syscall(const struct pt_thread *t)
{
	long rax = (long)t->saved_regs.rax;

	return is_parked_syscall((long)t->saved_regs.orig_rax) &&
	       (rax == -EINTR || rax == -ERESTARTSYS || rax == -ERESTARTNOINTR ||
		rax == -ERESTARTNOHAND || rax == -ERESTART_RESTARTBLOCK);
}

static int find_symbols(struct pyproc *pp, struct target_syms *s, char *err,
			size_t err_len)
{
	static const char *const names[] = {
		"PyGILState_Ensure", "PyGILState_Release", "PyRun_SimpleString",
		"Py_AddPendingCall",
	};
	uint64_t *slots[] = { &s->gil_ensure, &s->gil_release, &s->run_string,
			      &s->add_pending };
	const struct map_entry *interp = NULL, *libc;
	struct proc_maps maps;
	int ret;

	ret = proc_maps_read(pp->pid, &maps);
	if (ret) {
		set_err(err, err_len, "pid %d: reading maps: %s", pp->pid, strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < maps.count; i++)
		if (maps.entries[i].start == pp->interp_map_start)
			interp = &maps.entries[i];
	s->ntext = 0;
	for (size_t i = 0; interp && i < maps.count && s->ntext < 4; i++) {
		const struct map_entry *m = &maps.entries[i];

		if (m->inode == interp->inode && strcmp(m->path, interp->path) == 0 &&
		    m->perms[2] == 'x') {
			s->text_start[s->ntext] = m->start;
			s->text_end[s->ntext++] = m->end;
		}
	}
	libc = mapped_file_find(&maps, "libc.so");
	if (!libc)
		libc = mapped_file_find(&maps, "libc-");
	if (!interp || !libc) {
		set_err(err, err_len, "pid %d: %s not found in its maps", pp->pid,
			interp ? "libc" : "the interpreter");
		ret = -ENOENT;
		goto out;
	}
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		ret = mapped_elf_symbol(pp->pid, &maps, interp, names[i], slots[i], NULL);
		if (ret) {
			set_err(err, err_len, "pid %d: %s not found in %s", pp->pid,
				names[i], pp->interp_path);
			goto out;
		}
	}
	ret = mapped_elf_symbol(pp->pid, &maps, interp, "_PyEval_EvalFrameDefault",
				&s->eval_frame, &s->eval_frame_size);
	if (ret)
		s->eval_frame = s->eval_frame_size = 0;
	ret = mapped_elf_symbol(pp->pid, &maps, libc, "syscall", &s->libc_syscall, NULL);
	if (!ret)
		ret = mapped_elf_symbol(pp->pid, &maps, libc, "mmap", &s->libc_mmap, NULL);
	if (ret) {
		set_err(err, err_len, "pid %d: syscall() or mmap() not found in libc", pp->pid);
		goto out;
	}
	if (mapped_elf_symbol(pp->pid, &maps, libc, "dlopen", &s->libc_dlopen, NULL) ||
	    mapped_elf_symbol(pp->pid, &maps, libc, "dlsym", &s->libc_dlsym, NULL))
		s->libc_dlopen = s->libc_dlsym = 0;
out:
	proc_maps_free(&maps);
	return ret;
}

/* Remote syscall through libc's syscall(): returns -errno semantics as the
 * raw value, since syscall() returns -1 and sets errno on failure. */
static int remote_syscall(struct pt_thread *t, const struct target_syms *s,
			  long nr, const uint64_t *args, int nargs, uint64_t *ret)
{
	uint64_t all[6] = { (uint64_t)nr };

	if (nargs > 5)
		return -EINVAL;	/* the 6th would go on the stack */
	for (int i = 0; i < nargs; i++)
		all[i + 1] = args[i];
	return pt_call(t, s->libc_syscall, all, nargs + 1, ret, CALL_TIMEOUT_MS);
}

/* Undo a remote memfd after a failure: the target keeps no stray fd. */
static void close_remote_fd(struct pt_thread *t, const struct target_syms *s,
			    int fd)
{
	uint64_t ignored;

	remote_syscall(t, s, SYS_close, (uint64_t[]){ (uint64_t)fd }, 1, &ignored);
}

/* A memfd created in the target (*target_fd there) and our own copy of it
 * (*local_fd), which stays valid after the target closes its fd. */
static int remote_memfd(struct pt_thread *t, const struct target_syms *s,
			const char *name, unsigned int flags, int *target_fd,
			int *local_fd)
{
	uint64_t name_addr, fd;
	int pidfd, local, ret;

	ret = pt_push(t, name, strlen(name) + 1, &name_addr);
	if (!ret)
		ret = remote_syscall(t, s, SYS_memfd_create,
				     (uint64_t[]){ name_addr, flags }, 2, &fd);
	if (ret)
		return ret;
	if ((int)fd < 0)
		return -EIO;	/* the target's errno is out of reach */
	pidfd = (int)syscall(SYS_pidfd_open, t->pid, 0);
	local = pidfd < 0 ? -1 : (int)syscall(SYS_pidfd_getfd, pidfd, (int)fd, 0);
	ret = local < 0 ? -errno : 0;
	if (pidfd >= 0)
		close(pidfd);
	if (ret) {
		close_remote_fd(t, s, (int)fd);
		return ret;
	}
	*target_fd = (int)fd;
	*local_fd = local;
	return 0;
}

/* Create the memfd in the target and fill it with the helper. */
static int place_helper(struct pt_thread *t, const struct target_syms *s,
			int *target_fd, char *err, size_t err_len)
{
	int local, ret;

	ret = remote_memfd(t, s, PYDI_HELPER_MEMFD_NAME,
			   MFD_CLOEXEC | MFD_ALLOW_SEALING, target_fd, &local);
	if (ret) {
		set_err(err, err_len, "pid %d: creating the helper's memfd in the target: %s",
			t->pid, strerror(-ret));
		return ret;
	}
	if (pwrite(local, pydi_helper_blob, pydi_helper_blob_len, 0) !=
	    (ssize_t)pydi_helper_blob_len) {
		ret = -EIO;
		set_err(err, err_len, "pid %d: writing the helper into its memfd failed",
			t->pid);
	} else {
		/* Nobody changes the helper under the loader's feet. */
		fcntl(local, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
		      F_SEAL_WRITE | F_SEAL_SEAL);
	}
	close(local);
	if (ret)
		close_remote_fd(t, s, *target_fd);
	return ret;
}

/*
 * Where the bootstrap leaves its error: a second memfd it writes and closes.
 * Our copy outlives that close, so the error reaches us without leaving
 * anything in the app's modules, and on the pending-call path "ran and
 * failed" is told apart from "not run yet".
 */
static int place_status(struct pt_thread *t, const struct target_syms *s,
			int *target_fd, int *local_fd, char *err, size_t err_len)
{
	int ret = remote_memfd(t, s, "pydi-status", MFD_CLOEXEC, target_fd, local_fd);

	if (ret)
		set_err(err, err_len, "pid %d: creating a status memfd in the target: %s",
			t->pid, strerror(-ret));
	return ret;
}

/* The error the bootstrap wrote, if any: its length (0: none yet). */
static size_t boot_error(int status_local, char *msg, size_t len)
{
	ssize_t n = pread(status_local, msg, len - 1, 0);

	if (n < 0)
		n = 0;
	msg[n] = '\0';
	return (size_t)n;
}

/*
 * The Python that loads the helper, run by PyRun_SimpleString in __main__:
 * it binds no name there, never raises into the app (the error goes to the
 * status memfd), imports nothing that is not already loaded, and closes both
 * memfds whatever happens.
 */
static int bootstrap_text(char *buf, size_t len, int fd, int status_fd,
			  uint64_t page)
{
	int n = snprintf(buf, len,
		"exec('''\n"
		"import sys\n"
		"try:\n"
		"    if \"" PYDI_HELPER_MODULE "\" not in sys.modules:\n"
		"        e = sys.modules[\"_frozen_importlib_external\"]\n"
		"        b = sys.modules[\"_frozen_importlib\"]\n"
		"        l = e.ExtensionFileLoader(\"" PYDI_HELPER_MODULE "\", \"/proc/self/fd/%d\")\n"
		"        s = b.spec_from_loader(\"" PYDI_HELPER_MODULE "\", l)\n"
		"        m = b.module_from_spec(s)\n"
		"        sys.modules[\"" PYDI_HELPER_MODULE "\"] = m\n"
		"        try:\n"
		"            l.exec_module(m)\n"
		"        except BaseException:\n"
		"            del sys.modules[\"" PYDI_HELPER_MODULE "\"]\n"
		"            raise\n"
		"    sys.modules[\"" PYDI_HELPER_MODULE "\"]._start(%" PRIu64 ")\n"
		"except BaseException as x:\n"
		"    try:\n"
		"        t = \"%%s: %%s\" %% (type(x).__name__, x)\n"
		"        sys.modules[\"posix\"].write(%d, t.encode(\"ascii\", \"backslashreplace\")[:%d])\n"
		"    except BaseException:\n"
		"        pass\n"
		"finally:\n"
		"    for f in (%d, %d):\n"
		"        try:\n"
		"            sys.modules[\"posix\"].close(f)\n"
		"        except BaseException:\n"
		"            pass\n"
		"''', {\"__builtins__\": __builtins__})\n",
		fd, page, status_fd, BOOT_ERROR_MAX - 1, fd, status_fd);

	return n > 0 && (size_t)n < len ? 0 : -ENAMETOOLONG;
}

/*
 * Until the helper reports ready: 0; -EIO with the message in err if the
 * bootstrap left an error (status_local >= 0); -ETIMEDOUT or another
 * negative errno otherwise.
 */
static int wait_ready(struct pyproc *pp, struct helper_client *hc,
		      int status_local, int timeout_ms, char *err, size_t err_len)
{
	double deadline = (monotonic_ns() / 1e6) + timeout_ms;
	char msg[BOOT_ERROR_MAX];

	for (;;) {
		int ret = helper_find(pp->pid, hc);

		if (!ret && hc->state.status == PYDI_HELPER_READY &&
		    hc->state.pid == (int32_t)pp->ns_pid)
			return 0;
		if (ret && ret != -ENOENT)
			return ret;
		helper_close(hc);
		if (status_local >= 0 && boot_error(status_local, msg, sizeof(msg))) {
			set_err(err, err_len, "pid %d: the helper failed to load: %s",
				pp->pid, msg);
			return -EIO;
		}
		if ((monotonic_ns() / 1e6) >= deadline)
			return -ETIMEDOUT;
		usleep(2000);
	}
}

/* Both memfds in the target: the helper, and the bootstrap's status. */
static int place_files(struct pt_thread *t, const struct target_syms *s, int *fd,
		       int *status_fd, int *status_local, char *err, size_t err_len)
{
	int ret = place_helper(t, s, fd, err, err_len);

	if (ret)
		return ret;
	ret = place_status(t, s, status_fd, status_local, err, err_len);
	if (ret)
		close_remote_fd(t, s, *fd);
	return ret;
}

/* A page of the target's for the bootstrap text, which _start unmaps. */
static int remote_text_page(struct pt_thread *t, const struct target_syms *s,
			    int fd, int status_fd, uint64_t *page)
{
	char text[2048];
	uint64_t rc;
	int ret;

	ret = pt_call(t, s->libc_mmap,
		      (uint64_t[]){ 0, 4096, PROT_READ | PROT_WRITE,
				    MAP_PRIVATE | MAP_ANONYMOUS, (uint64_t)-1, 0 },
		      6, page, CALL_TIMEOUT_MS);
	if (ret || *page == (uint64_t)-1)
		return ret ? ret : -ENOMEM;
	ret = bootstrap_text(text, sizeof(text), fd, status_fd, *page);
	if (!ret)
		ret = pt_write_mem(t->pid, *page, text, strlen(text) + 1);
	if (ret)
		remote_syscall(t, s, SYS_munmap, (uint64_t[]){ *page, 4096 }, 2, &rc);
	return ret;
}

/*
 * The borrowed thread only loads the helper and calls pydi_helper_boot,
 * whose thread runs the bootstrap and stays on as the control thread: no
 * Python is compiled or run on the app's thread, and nothing it allocates
 * lands in that thread's malloc arena. 0: started (the bootstrap reports
 * through the status memfd); 1: not possible here (libc before 2.34, the
 * .so did not load: the bootstrap on this thread says why); -errno.
 */
static int boot_on_helper_thread(struct pt_thread *t, const struct target_syms *s,
				 int fd, int status_fd, char *err, size_t err_len)
{
	char path[32];
	uint64_t page, addr, handle, boot, rc;
	int ret;

	if (!s->libc_dlopen || !s->libc_dlsym)
		return 1;
	ret = remote_text_page(t, s, fd, status_fd, &page);
	if (ret) {
		set_err(err, err_len, "pid %d: placing the bootstrap in the target: %s",
			t->pid, strerror(-ret));
		return ret;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	handle = boot = 0;
	ret = pt_push(t, path, strlen(path) + 1, &addr);
	if (!ret)
		ret = pt_call(t, s->libc_dlopen, (uint64_t[]){ addr, RTLD_NOW }, 2,
			      &handle, CALL_TIMEOUT_MS);
	if (!ret && handle)
		ret = pt_push(t, PYDI_HELPER_BOOT_SYM, sizeof(PYDI_HELPER_BOOT_SYM), &addr);
	if (!ret && handle)
		ret = pt_call(t, s->libc_dlsym, (uint64_t[]){ handle, addr }, 2, &boot,
			      CALL_TIMEOUT_MS);
	if (!ret && boot)
		ret = pt_call(t, boot, (uint64_t[]){ page }, 1, &rc, CALL_TIMEOUT_MS);
	if (!ret && boot && (int)rc == 0)
		return 0;
	remote_syscall(t, s, SYS_munmap, (uint64_t[]){ page, 4096 }, 2, &rc);
	if (ret) {
		set_err(err, err_len, "pid %d: loading the helper on thread %d: %s",
			t->pid, t->tid, strerror(-ret));
		return ret;
	}
	if (boot) {
		set_err(err, err_len, "pid %d: starting the helper's thread: %s",
			t->pid, strerror(-(int)rc));
		return (int)rc;
	}
	return 1;
}

/* GIL-free path: the borrowed thread starts the helper's own thread, or,
 * where it cannot, runs the bootstrap itself. *status_wait: the status memfd
 * to wait on for the former (the caller closes it), else -1. */
static int inject_on_parked(struct pyproc *pp, struct pt_thread *t,
			    const struct target_syms *s, int *status_wait,
			    char *err, size_t err_len)
{
	char text[2048], msg[BOOT_ERROR_MAX];
	uint64_t text_addr, gil_state, rc;
	int fd, status_fd, status_local, ret;

	*status_wait = -1;
	ret = place_files(t, s, &fd, &status_fd, &status_local, err, err_len);
	if (ret)
		return ret;
	ret = boot_on_helper_thread(t, s, fd, status_fd, err, err_len);
	if (ret == 0) {
		*status_wait = status_local;
		return 0;
	}
	if (ret < 0) {
		close_remote_fd(t, s, fd);
		close_remote_fd(t, s, status_fd);
		goto out;
	}
	ret = bootstrap_text(text, sizeof(text), fd, status_fd, 0);
	if (!ret)
		ret = pt_push(t, text, strlen(text) + 1, &text_addr);
	if (!ret)
		ret = pt_call(t, s->gil_ensure, NULL, 0, &gil_state, CALL_TIMEOUT_MS);
	if (ret) {
		close_remote_fd(t, s, fd);
		close_remote_fd(t, s, status_fd);
		set_err(err, err_len, "pid %d: taking the GIL on thread %d: %s",
			pp->pid, t->tid, strerror(-ret));
		goto out;
	}
	ret = pt_call(t, s->run_string, (uint64_t[]){ text_addr }, 1, &rc,
		      CALL_TIMEOUT_MS);
	if (ret) {
		/* A crash or a hang inside the bootstrap: the thread's state is
		 * unknown, so do not call into it again. */
		set_err(err, err_len, "pid %d: running the bootstrap on thread %d: %s",
			pp->pid, t->tid, strerror(-ret));
		goto out;
	}
	if ((int)rc != 0) {
		set_err(err, err_len, "pid %d: the bootstrap raised", pp->pid);
		ret = -EIO;
	} else if (boot_error(status_local, msg, sizeof(msg))) {
		set_err(err, err_len, "pid %d: the helper failed to load: %s",
			pp->pid, msg);
		ret = -EIO;
	}
	/* Always give the GIL back, whatever the bootstrap did. */
	if (pt_call(t, s->gil_release, (uint64_t[]){ gil_state }, 1, &rc,
		    CALL_TIMEOUT_MS) && !ret) {
		set_err(err, err_len, "pid %d: releasing the GIL failed", pp->pid);
		ret = -EIO;
	}
out:
	close(status_local);
	return ret;
}

/*
 * Where the busy main thread may be stopped to queue a pending call: in the
 * interpreter's own code (the eval loop and what it calls), not in libc or an
 * extension. There it holds no pending-call lock: in a single-threaded
 * process only it could, and only while running pending calls, which nobody
 * else queues. Our calls there (syscall, mmap, Py_AddPendingCall) take no
 * libc lock either.
 */
static bool in_interpreter_code(const struct target_syms *s, uint64_t ip)
{
	if (s->eval_frame && ip >= s->eval_frame &&
	    ip < s->eval_frame + s->eval_frame_size)
		return true;
	for (int i = 0; i < s->ntext; i++)
		if (ip >= s->text_start[i] && ip < s->text_end[i])
			return true;
	return false;
}

/* What the pending-call path leaves for inject_helper to wait on. */
struct pending_boot {
	uint64_t page;		/* the bootstrap text in the target */
	int fd, status_fd;	/* the target's memfds */
	int status_local;	/* our copy of the status memfd */
};

/* Pending-call path: the busy main thread, stopped inside the eval loop. */
static int inject_pending(struct pyproc *pp, struct pt_thread *t,
			  const struct target_syms *s, struct pending_boot *pb,
			  char *err, size_t err_len)
{
	uint64_t page, rc;
	int fd, status_fd, status_local, ret, tries;

	for (tries = 0; tries < EVAL_LOOP_TRIES; tries++) {
		if (in_interpreter_code(s, pt_ip(t)))
			break;
		ret = pt_resume_and_stop(t, 500, ATTACH_TIMEOUT_MS);
		if (ret) {
			set_err(err, err_len, "pid %d: re-stopping the main thread: %s",
				pp->pid, strerror(-ret));
			return ret;
		}
	}
	if (tries == EVAL_LOOP_TRIES) {
		set_err(err, err_len, "pid %d: its main thread never stopped inside the interpreter (busy in C?)",
			pp->pid);
		return -EAGAIN;
	}
	ret = place_files(t, s, &fd, &status_fd, &status_local, err, err_len);
	if (ret)
		return ret;
	ret = remote_text_page(t, s, fd, status_fd, &page);
	if (ret) {
		set_err(err, err_len, "pid %d: placing the bootstrap in the target: %s",
			pp->pid, strerror(-ret));
		goto fail;
	}
	ret = pt_call(t, s->add_pending, (uint64_t[]){ s->run_string, page }, 2,
		      &rc, CALL_TIMEOUT_MS);
	if (ret || (int)rc != 0) {
		set_err(err, err_len, "pid %d: Py_AddPendingCall failed", pp->pid);
		ret = ret ? ret : -EAGAIN;
		goto unmap;
	}
	pb->page = page;
	pb->fd = fd;
	pb->status_fd = status_fd;
	pb->status_local = status_local;
	return 0;
unmap:
	remote_syscall(t, s, SYS_munmap, (uint64_t[]){ page, 4096 }, 2, &rc);
fail:
	close_remote_fd(t, s, fd);
	close_remote_fd(t, s, status_fd);
	close(status_local);
	return ret;
}

/* Is this thread one we may borrow? Seized and stopped on return. */
static int try_borrow(struct pyproc *pp, const struct py_thread *th,
		      struct pt_thread *t)
{
	uint64_t holder;
	long nr;

	if (th->tid <= 0 || thread_syscall(pp->pid, th->tid, &nr) ||
	    !is_parked_syscall(nr))
		return -EAGAIN;
	if (pt_attach(t, pp->pid, th->tid, ATTACH_TIMEOUT_MS))
		return -EAGAIN;
	if (!interrupted_in_syscall(t) || py_gil_holder(pp, &holder) ||
	    holder == th->tstate) {
		pt_detach(t);
		return -EAGAIN;
	}
	return 0;
}

static int inject_locked(struct pyproc *pp, struct helper_client *hc,
			 struct inject_result *res, char *err, size_t err_len);

/* One injector per target: a second pydi waits, then finds the helper in. */
int inject_helper(struct pyproc *pp, struct helper_client *hc,
		  struct inject_result *res, char *err, size_t err_len)
{
	int lock_fd, ret;

	memset(res, 0, sizeof(*res));
	memset(hc, 0, sizeof(*hc));
	hc->pidfd = hc->wake_fd = hc->done_fd = -1;
	ret = helper_lock(pp->pid, HELPER_LOCK_INJECT, INJECT_LOCK_TIMEOUT_MS,
			  &lock_fd);
	if (ret) {
		set_err(err, err_len, "pid %d: another pydi kept injecting into it for %d ms%s%s",
			pp->pid, INJECT_LOCK_TIMEOUT_MS, ret == -EBUSY ? "" : ": ",
			ret == -EBUSY ? "" : strerror(-ret));
		return ret;
	}
	ret = inject_locked(pp, hc, res, err, err_len);
	helper_unlock(lock_fd);
	return ret;
}

static int inject_locked(struct pyproc *pp, struct helper_client *hc,
			 struct inject_result *res, char *err, size_t err_len)
{
	struct py_thread threads[256];
	struct target_syms syms;
	struct pt_thread *t;
	double start = (monotonic_ns() / 1e6);
	size_t count, order[256], n = 0;
	struct pending_boot pb;
	int status_wait = -1, ret;

	memset(res, 0, sizeof(*res));
	ret = helper_find(pp->pid, hc);
	if (!ret && hc->state.status == PYDI_HELPER_READY &&
	    hc->state.pid == (int32_t)pp->ns_pid) {
		res->path = INJECT_REUSED;
		return 0;
	}
	helper_close(hc);
	if (ret == -EPROTO && hc->state.magic == PYDI_HELPER_MAGIC) {
		/* Resident for good: only a restart of the process replaces it. */
		set_err(err, err_len, "pid %d: its helper came from another pydi version "
			"(helper ABI %u, this pydi speaks %u): restart the process to probe it",
			pp->pid, hc->state.abi, PYDI_HELPER_ABI);
		return ret;
	}
	if (ret && ret != -ENOENT) {
		set_err(err, err_len, "pid %d: a helper is mapped but unusable: %s",
			pp->pid, strerror(-ret));
		return ret;
	}
	if (!pp->instrumentable) {
		set_err(err, err_len, "pid %d: %s", pp->pid, pp->reason);
		return -ENOTSUP;
	}
	ret = find_symbols(pp, &syms, err, err_len);
	if (ret)
		return ret;
	ret = py_threads_list(pp, threads, 256, &count);
	if (ret) {
		set_err(err, err_len, "pid %d: reading its thread states: %s", pp->pid,
			strerror(-ret));
		return ret;
	}
	/* The main thread first. */
	for (size_t i = 0; i < count; i++)
		if (threads[i].tid == pp->pid)
			order[n++] = i;
	for (size_t i = 0; i < count; i++)
		if (threads[i].tid != pp->pid)
			order[n++] = i;

	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	/* Several passes: a parked thread wakes now and then (a signal, a
	 * request) and one look may catch it awake. */
	for (int pass = 0; pass < BORROW_PASSES; pass++) {
		if (pass)
			usleep(BORROW_RETRY_US);
		for (size_t i = 0; i < n; i++) {
			if (try_borrow(pp, &threads[order[i]], t))
				continue;
			res->path = INJECT_GIL_FREE;
			res->tid = t->tid;
			res->syscall_nr = (long)t->saved_regs.orig_rax;
			ret = inject_on_parked(pp, t, &syms, &status_wait, err, err_len);
			pt_detach(t);
			goto done;
		}
	}
	if (count != 1) {
		set_err(err, err_len, "pid %d: no Python thread is parked in a safe syscall to borrow (%zu threads, all busy or in futex); retry",
			pp->pid, count);
		ret = -EAGAIN;
		goto done;
	}
	ret = pt_attach(t, pp->pid, pp->pid, ATTACH_TIMEOUT_MS);
	if (ret) {
		set_err(err, err_len, "pid %d: ptrace attach failed: %s%s", pp->pid,
			strerror(-ret), ret == -EPERM ?
			" (needs CAP_SYS_PTRACE; check kernel.yama.ptrace_scope and seccomp)" : "");
		goto done;
	}
	res->path = INJECT_PENDING_CALL;
	res->tid = pp->pid;
	ret = inject_pending(pp, t, &syms, &pb, err, err_len);
	pt_detach(t);
	if (ret)
		goto done;
	ret = wait_ready(pp, hc, pb.status_local, READY_TIMEOUT_MS, err, err_len);
	if (ret && ret != -EIO) {
		/* Withdraw the request: should the queued text still run, it
		 * only closes the memfds it would have used. */
		char cancelled[160];

		snprintf(cancelled, sizeof(cancelled),
			 "try:\n __import__('posix').close(%d)\n __import__('posix').close(%d)\n"
			 "except BaseException:\n pass\n", pb.fd, pb.status_fd);
		pt_write_mem(pp->pid, pb.page, cancelled, strlen(cancelled) + 1);
		if (ret == -ETIMEDOUT)
			set_err(err, err_len, "pid %d: the helper did not come up within %d ms (pending call not run)",
				pp->pid, READY_TIMEOUT_MS);
		else
			set_err(err, err_len, "pid %d: waiting for the helper: %s",
				pp->pid, strerror(-ret));
	}
	/* On -EIO the bootstrap ran and failed (err says why); its text page
	 * stays mapped: only _start unmaps it. */
	close(pb.status_local);
	res->elapsed_ms = (monotonic_ns() / 1e6) - start;
	free(t);
	return ret;
done:
	free(t);
	if (!ret) {
		ret = wait_ready(pp, hc, status_wait, status_wait < 0 ?
				 READY_TIMEOUT_MS : BOOT_TIMEOUT_MS, err, err_len);
		if (ret && ret != -EIO)
			set_err(err, err_len, "pid %d: the helper loaded but did not report ready: %s",
				pp->pid, strerror(-ret));
	}
	if (status_wait >= 0)
		close(status_wait);
	res->elapsed_ms = (monotonic_ns() / 1e6) - start;
	return ret;
}
