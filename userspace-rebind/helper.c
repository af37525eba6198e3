/* SPDX-License-Identifier: MIT */
/*
 * _pydi_helper: the extension module pydi loads into a target process.
 *
 * It carries the native hook BPF attaches to, the embedded Python half
 * (bootstrap.py, run as module _pydi_boot), and the control thread the agent
 * talks to through helper memory and eventfds (see helper_abi.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helper.h"
#include "hook.h"
#include "own_heap.h"

/* Exported: the agent finds it by symbol in the mapped helper. */
__attribute__((visibility("default"), used))
struct pydi_helper_state pydi_helper_state = {
	.magic = PYDI_HELPER_MAGIC,
	.abi = PYDI_HELPER_ABI,
	.status = PYDI_HELPER_LOADING,
	.wake_fd = -1,
	.done_fd = -1,
};

extern const unsigned char pydi_boot_source[];
extern const size_t pydi_boot_source_len;

static PyObject *boot_module;	/* _pydi_boot, never in sys.modules */
static PyObject *native_module;	/* this module, while _start loads _pydi_boot */

/*
 * Hook point: BPF uprobes attach here. It is written in assembly so that its
 * first instruction is a single 5-byte NOP: the kernel's optimized uprobe
 * replaces exactly that with a call, instead of trapping and single-stepping a
 * compiler-chosen prologue instruction (~10 us per hit).
 *
 * void pydi_hook_event(uint64_t code_or_tstate, uint64_t slot, int64_t line,
 *                      int64_t event, void *value, uint64_t frame);
 *
 * frame is the probed frame and code_or_tstate its code, read here where
 * they cost a few loads instead of BPF's user-memory reads (~65 ns each);
 * if the helper has no frame offsets, frame is 0 and code_or_tstate the
 * thread state, whose current frame BPF reads. slot is the probe's gate,
 * event an enum pydi_hook_event (with PYDI_EV_PAIRED), value the return
 * value or the exception (NULL otherwise). Only hook.c calls it, after the
 * slot's gate let the call through.
 */
__asm__(".text\n"
	".globl pydi_hook_event\n"
	".type pydi_hook_event, @function\n"
	"pydi_hook_event:\n"
	"\t.byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"
	"\tret\n"
	".size pydi_hook_event, .-pydi_hook_event\n");

/*
 * The bootstrap is compiled a top-level chunk at a time: the parser needs
 * about 60 bytes per byte of source, all of it held until the compile ends,
 * so at once the whole ~140 KB took ~8 MB that the allocator keeps (the
 * bootstrap's live objects sit above it); in chunks the peak is the largest
 * chunk's and each chunk reuses what the last freed.
 */
#define BOOT_CHUNK_MIN (8u << 10)

static int
opens_top_level_def(const char *line)
{
	return strncmp(line, "def ", 4) == 0 || strncmp(line, "class ", 6) == 0
	       || strncmp(line, "async def ", 10) == 0 || line[0] == '@';
}

/* Where the chunk that starts at from ends: at least BOOT_CHUNK_MIN bytes
 * on, before a top-level def, class or decorator after a blank line (such a
 * line cannot be inside a bracket; inside a string it would cut the string
 * and fail every load, so no test would pass). */
static size_t
chunk_end(const char *src, size_t len, size_t from)
{
	size_t at = from + BOOT_CHUNK_MIN;

	while (at < len) {
		const char *nl = memchr(src + at, '\n', len - at);

		if (nl == NULL) {
			break;
		}
		at = (size_t)(nl - src) + 1;	/* the next line's start */
		if (at < len && src[at - 2] == '\n' && opens_top_level_def(src + at)) {
			return at;
		}
	}
	return len;
}

static size_t
count_lines(const char *text, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		n += text[i] == '\n';
	}
	return n;
}

/* Compile and run src[from, end) in dict; `lines` blank lines before it
 * keep tracebacks' line numbers those of bootstrap.py. */
static int
run_chunk(PyObject *dict, const char *src, size_t from, size_t end,
	  size_t lines)
{
	char *text = malloc(lines + (end - from) + 1);
	PyObject *code, *result;
	int ok;

	if (text == NULL) {
		PyErr_NoMemory();
		return -1;
	}
	memset(text, '\n', lines);
	memcpy(text + lines, src + from, end - from);
	text[lines + (end - from)] = '\0';
	code = Py_CompileString(text, "<pydi-bootstrap>", Py_file_input);
	free(text);
	result = code ? PyEval_EvalCode(code, dict, dict) : NULL;
	Py_XDECREF(code);
	ok = result != NULL;
	Py_XDECREF(result);
	return ok ? 0 : -1;
}

static PyObject *
load_boot_module(PyObject *native)
{
	const char *src = (const char *)pydi_boot_source;
	size_t len = pydi_boot_source_len, from = 0, lines = 0;
	PyObject *mod, *dict;
	int err = 0;

	mod = PyModule_New("_pydi_boot");
	if (mod == NULL) {
		return NULL;
	}
	dict = PyModule_GetDict(mod);	/* borrowed */
	if (PyDict_SetItemString(dict, "__builtins__", PyEval_GetBuiltins()) < 0
	    || PyDict_SetItemString(dict, "_native", native) < 0) {
		Py_DECREF(mod);
		return NULL;
	}
	own_heap_enter();
	while (!err && from < len) {
		size_t end = chunk_end(src, len, from);

		err = run_chunk(dict, src, from, end, lines);
		lines += count_lines(src + from, end - from);
		from = end;
	}
	own_heap_leave();
	if (err) {
		Py_DECREF(mod);
		return NULL;
	}
	return mod;
}

/* control_start's first job: _pydi_boot is compiled and run on the control
 * thread. What the compile leaves in the allocating thread's malloc arena
 * (parser memory, freed but scattered; ~8 MB compiled at once) would, in
 * the app's main arena, move where the app's own large blocks land. */
static int
load_on_control_thread(void)
{
	boot_module = load_boot_module(native_module);
	return boot_module != NULL ? 0 : -1;
}

PyObject *
helper_dispatch(const char *cmd, size_t len)
{
	if (boot_module == NULL) {
		PyErr_SetString(PyExc_RuntimeError, "pydi helper not started");
		return NULL;
	}
	return PyObject_CallMethod(boot_module, "dispatch", "s#", cmd,
				   (Py_ssize_t)len);
}

/* Register fn (a module function) with atexit / os.register_at_fork. */
static int
register_hook(PyObject *self, const char *module, const char *func,
	      const char *kw, const char *attr)
{
	PyObject *mod, *register_fn, *callback, *args = NULL, *kwargs = NULL;
	PyObject *result = NULL;

	callback = PyObject_GetAttrString(self, attr);
	if (callback == NULL) {
		return -1;
	}
	mod = PyImport_ImportModule(module);	/* builtin modules only */
	if (mod == NULL) {
		Py_DECREF(callback);
		return -1;
	}
	register_fn = PyObject_GetAttrString(mod, func);
	Py_DECREF(mod);
	if (register_fn == NULL) {
		Py_DECREF(callback);
		return -1;
	}
	if (kw != NULL) {
		args = PyTuple_New(0);
		kwargs = Py_BuildValue("{s:O}", kw, callback);
		if (args != NULL && kwargs != NULL) {
			result = PyObject_Call(register_fn, args, kwargs);
		}
	}
	else {
		result = PyObject_CallFunctionObjArgs(register_fn, callback, NULL);
	}
	Py_XDECREF(args);
	Py_XDECREF(kwargs);
	Py_DECREF(register_fn);
	Py_DECREF(callback);
	if (result == NULL) {
		return -1;
	}
	Py_DECREF(result);
	return 0;
}

/*
 * _start(page=0): run by the injected bootstrap. page is an injector page
 * that held the bootstrap text (pending-call path); it is no longer needed
 * once the text is compiled, so it is unmapped here.
 */
static PyObject *
helper_start(PyObject *self, PyObject *args)
{
	static int hooks_registered;
	unsigned long long page = 0;
	int err;

	if (!PyArg_ParseTuple(args, "|K", &page)) {
		return NULL;
	}
	if (page != 0) {
		munmap((void *)(uintptr_t)page, (size_t)sysconf(_SC_PAGESIZE));
	}
	if (pydi_helper_state.status == PYDI_HELPER_READY
	    && pydi_helper_state.pid == getpid()) {
		Py_RETURN_NONE;
	}
	/* Once, before anything can fail half-way: _stop and _after_fork are
	 * no-ops until the control thread runs. */
	if (!hooks_registered) {
		if (register_hook(self, "atexit", "register", NULL, "_stop") < 0
		    || register_hook(self, "posix", "register_at_fork",
				     "after_in_child", "_after_fork") < 0) {
			return NULL;
		}
		hooks_registered = 1;
	}
	native_module = self;
	err = control_start(boot_module == NULL ? load_on_control_thread : NULL);
	native_module = NULL;
	if (err == -ECANCELED) {
		return NULL;
	}
	if (err) {
		errno = -err;
		return PyErr_SetFromErrno(PyExc_OSError);
	}
	Py_RETURN_NONE;
}

static PyObject *
helper_stop(PyObject *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	control_stop();
	Py_RETURN_NONE;
}

static PyObject *
helper_after_fork(PyObject *self, PyObject *unused)
{
	int err;

	(void)self;
	(void)unused;
	hook_after_fork();
	own_heap_after_fork();
	err = control_after_fork();
	if (err) {
		errno = -err;
		return PyErr_SetFromErrno(PyExc_OSError);
	}
	Py_RETURN_NONE;
}

/* dispatch(json) -> json: the same path the control thread takes. */
static PyObject *
helper_py_dispatch(PyObject *self, PyObject *args)
{
	const char *cmd;
	Py_ssize_t len;

	(void)self;
	if (!PyArg_ParseTuple(args, "s#", &cmd, &len)) {
		return NULL;
	}
	return helper_dispatch(cmd, (size_t)len);
}

static PyMethodDef helper_methods[] = {
	{"_start", helper_start, METH_VARARGS, "Start the control thread."},
	{"_stop", helper_stop, METH_NOARGS, "Stop the control thread."},
	{"_after_fork", helper_after_fork, METH_NOARGS,
	 "Restart the control thread in a forked child."},
	{"dispatch", helper_py_dispatch, METH_VARARGS, "Run one command."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef helper_module = {
	PyModuleDef_HEAD_INIT, PYDI_HELPER_MODULE, NULL, -1, helper_methods,
	NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__pydi_helper(void)
{
	PyObject *mod = PyModule_Create(&helper_module);

	if (mod != NULL) {
		PyModule_AddStringConstant(mod, "__version__",
					   PYDI_HELPER_VERSION);
		if (hook_module_init(mod) < 0) {
			Py_CLEAR(mod);
		}
	}
	return mod;
}
