/* SPDX-License-Identifier: MIT */
/*
 * The helper's control thread: sleeps on an eventfd until the agent posts a
 * command, runs it under the GIL, posts the reply; enforces the lease.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "helper.h"
#include "own_heap.h"

/* Without a lease the thread sleeps until a command wakes it, or this long
 * (ms): a lease written with no command after it is still seen. */
#define CONTROL_IDLE_MS 5000

static char cmd_buf[PYDI_CMD_MAX];
static char reply_buf[PYDI_REPLY_MAX];
static pthread_t control_thread;
static atomic_int stopping;
static int thread_running;

/* pydi_helper_boot's thread while it runs the bootstrap (GIL held): the
 * control_start it reaches adopts it as the control thread. */
static pthread_t boot_self;
static int booting, adopted;

/* A job the thread runs before it serves any command (see control_start). */
static struct {
	int (*fn)(void);
	int failed;
	PyObject *type, *value, *traceback;	/* what fn raised */
	sem_t done;
} first;

static void
post(int fd)
{
	uint64_t one = 1;

	if (write(fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is saturated; the agent is woken anyway. */
	}
}

static void
drain(int fd)
{
	uint64_t count;

	while (read(fd, &count, sizeof(count)) > 0) {
	}
}

static void
set_reply(const char *text, size_t len)
{
	static const char too_big[] =
		"{\"ok\":false,\"error_cause\":\"RUNTIME_ERROR\","
		"\"message\":\"reply larger than the helper's reply buffer\"}";

	if (len >= sizeof(reply_buf)) {
		text = too_big;
		len = sizeof(too_big) - 1;
	}
	memcpy(reply_buf, text, len);
	reply_buf[len] = '\0';
	pydi_helper_state.reply_len = len;
}

/* Run cmd under the GIL; the reply lands in reply_buf. */
static void
run_locked(const char *cmd, size_t len)
{
	PyGILState_STATE gil = PyGILState_Ensure();
	PyObject *reply;
	const char *text;
	Py_ssize_t text_len;

	own_heap_enter();
	reply = helper_dispatch(cmd, len);
	if (reply != NULL && (text = PyUnicode_AsUTF8AndSize(reply, &text_len))) {
		set_reply(text, (size_t)text_len);
	}
	else {
		static const char failed[] =
			"{\"ok\":false,\"error_cause\":\"RUNTIME_ERROR\","
			"\"message\":\"helper dispatch raised\"}";

		PyErr_Clear();
		set_reply(failed, sizeof(failed) - 1);
	}
	Py_XDECREF(reply);
	own_heap_leave();
	PyGILState_Release(gil);
}

static void
serve_command(void)
{
	uint64_t seq = pydi_helper_state.cmd_seq;
	uint64_t len = pydi_helper_state.cmd_len;

	if (seq == pydi_helper_state.reply_seq) {
		return;
	}
	if (len >= sizeof(cmd_buf)) {
		len = 0;	/* an empty command is answered as malformed */
	}
	cmd_buf[len] = '\0';
	run_locked(cmd_buf, len);
	pydi_helper_state.commands_run++;
	__atomic_store_n(&pydi_helper_state.reply_seq, seq, __ATOMIC_RELEASE);
	post(pydi_helper_state.done_fd);
}

static void
check_lease(void)
{
	static const char revert[] = "{\"cmd\":\"revert-all\",\"reason\":\"lease\"}";
	uint64_t deadline = pydi_helper_state.lease_deadline_ns;

	if (deadline == 0 || now_ns() < deadline) {
		return;
	}
	/* The agent is gone (or wedged): undo everything it asked for. */
	pydi_helper_state.lease_deadline_ns = 0;
	run_locked(revert, sizeof(revert) - 1);
	pydi_helper_state.lease_expiries++;
}

/* Until the lease's deadline: the agent moves it on while it lives, and the
 * thread then sleeps again (a wakeup per lease period, not a tick). */
static int
sleep_ms(void)
{
	uint64_t deadline = pydi_helper_state.lease_deadline_ns;
	uint64_t now = now_ns();
	uint64_t ms;

	if (deadline == 0) {
		return CONTROL_IDLE_MS;
	}
	if (deadline <= now) {
		return 0;
	}
	ms = (deadline - now + 999999) / 1000000;
	return ms < CONTROL_IDLE_MS ? (int)ms : CONTROL_IDLE_MS;
}

static void
run_first(void)
{
	PyGILState_STATE gil = PyGILState_Ensure();

	first.failed = first.fn() < 0;
	if (first.failed) {
		PyErr_Fetch(&first.type, &first.value, &first.traceback);
	}
	PyGILState_Release(gil);
	sem_post(&first.done);
}

static void
serve_until_stopped(void)
{
	struct pollfd wake = { .fd = pydi_helper_state.wake_fd, .events = POLLIN };

	while (!atomic_load(&stopping)) {
		int n = poll(&wake, 1, sleep_ms());

		if (atomic_load(&stopping)) {
			break;
		}
		if (n > 0) {
			drain(wake.fd);
		}
		serve_command();
		check_lease();
	}
}

static void *
control_main(void *arg)
{
	(void)arg;
	if (first.fn != NULL) {
		run_first();
	}
	serve_until_stopped();
	return NULL;
}

/* A thread that never takes the app's signals: 0 or -errno. */
static int
start_unsignalled(pthread_t *thread, void *(*fn)(void *), void *arg)
{
	sigset_t all, old;
	int err;

	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(thread, NULL, fn, arg);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return -err;
}

/* The bootstrap text, in globals of its own. It reports its own errors (the
 * status memfd) and never raises. */
static void
run_text(const char *text)
{
	PyObject *code = Py_CompileString(text, "<pydi-boot>", Py_file_input);
	PyObject *globals = PyDict_New();
	PyObject *result = NULL;

	if (code != NULL && globals != NULL
	    && PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins()) == 0) {
		result = PyEval_EvalCode(code, globals, globals);
	}
	Py_XDECREF(result);
	Py_XDECREF(globals);
	Py_XDECREF(code);
	PyErr_Clear();
}

static void *
boot_main(void *text)
{
	PyGILState_STATE gil = PyGILState_Ensure();

	boot_self = pthread_self();
	booting = 1;
	run_text(text);
	booting = 0;
	PyGILState_Release(gil);
	if (!adopted) {
		pthread_detach(pthread_self());
		return NULL;
	}
	serve_until_stopped();
	return NULL;
}

/*
 * The injector's entry, called on a borrowed app thread that holds no lock
 * and not the GIL: a thread of the helper's own runs the bootstrap text (the
 * loader that imports this module and calls _start) and then serves as the
 * control thread. The app's thread only creates it: compiling and running
 * Python there would leave the parser's freed blocks in that thread's malloc
 * arena (the main one, for the main thread), and the app's own large blocks
 * (a 256 KB recv buffer each request) would then be cut from those holes
 * instead of the top of the heap. 0 or -errno.
 */
__attribute__((visibility("default"))) int
pydi_helper_boot(const char *text)
{
	pthread_t thread;

	return start_unsignalled(&thread, boot_main, (void *)text);
}

static int
open_eventfds(void)
{
	int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	int done = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	if (wake < 0 || done < 0) {
		int err = -errno;

		if (wake >= 0) {
			close(wake);
		}
		if (done >= 0) {
			close(done);
		}
		return err;
	}
	pydi_helper_state.wake_fd = wake;
	pydi_helper_state.done_fd = done;
	return 0;
}

static void
close_eventfds(void)
{
	close(pydi_helper_state.wake_fd);
	close(pydi_helper_state.done_fd);
	pydi_helper_state.wake_fd = pydi_helper_state.done_fd = -1;
}

/* Stop the thread and wait for it; the caller holds the GIL. */
static void
join_thread(void)
{
	atomic_store(&stopping, 1);
	post(pydi_helper_state.wake_fd);
	/* The thread may be waiting for the GIL to finish a command. */
	Py_BEGIN_ALLOW_THREADS
	pthread_join(control_thread, NULL);
	Py_END_ALLOW_THREADS
	thread_running = 0;
	close_eventfds();
}

/* The caller holds the GIL; the thread needs it for the first job. */
static void
wait_first(void)
{
	Py_BEGIN_ALLOW_THREADS
	while (sem_wait(&first.done) < 0 && errno == EINTR) {
	}
	Py_END_ALLOW_THREADS
}

int
control_start(int (*first_fn)(void))
{
	int err;

	if (thread_running) {
		return 0;
	}
	pydi_helper_state.cmd_buf = (uint64_t)(uintptr_t)cmd_buf;
	pydi_helper_state.reply_buf = (uint64_t)(uintptr_t)reply_buf;
	pydi_helper_state.pid = getpid();
	pydi_helper_state.reply_seq = pydi_helper_state.cmd_seq;
	err = open_eventfds();
	if (err) {
		return err;
	}
	atomic_store(&stopping, 0);
	if (booting && pthread_equal(pthread_self(), boot_self)) {
		/* Already on a thread of our own, GIL held: first runs here, and
		 * the thread serves once the bootstrap returns (boot_main). */
		if (first_fn != NULL && first_fn() < 0) {
			close_eventfds();
			return -ECANCELED;
		}
		control_thread = boot_self;
		adopted = 1;
		thread_running = 1;
		pydi_helper_state.status = PYDI_HELPER_READY;
		return 0;
	}
	first.fn = first_fn;
	sem_init(&first.done, 0, 0);
	err = start_unsignalled(&control_thread, control_main, NULL);
	if (err) {
		close_eventfds();
		return err;
	}
	thread_running = 1;
	if (first_fn != NULL) {
		wait_first();
		first.fn = NULL;
		if (first.failed) {
			join_thread();
			PyErr_Restore(first.type, first.value, first.traceback);
			first.type = first.value = first.traceback = NULL;
			return -ECANCELED;
		}
	}
	pydi_helper_state.status = PYDI_HELPER_READY;
	return 0;
}

void
control_stop(void)
{
	if (!thread_running) {
		return;
	}
	join_thread();
	pydi_helper_state.status = PYDI_HELPER_STOPPED;
}

int
control_after_fork(void)
{
	/* Only the forking thread exists in the child. The parent's eventfds
	 * were inherited: leave the parent's helper to the parent. */
	if (!thread_running) {
		return 0;
	}
	thread_running = 0;
	booting = 0;
	close_eventfds();
	pydi_helper_state.status = PYDI_HELPER_LOADING;
	return control_start(NULL);
}
