/* SPDX-License-Identifier: MIT */
/*
 * _pydi_helper: the extension module pydi loads into a target process.
 *
 * This is the foundation's placeholder: it exports the native hook functions
 * BPF attaches to and an importable module with `hello`. Resolution, hooking,
 * the control channel and the lease arrive with the helper issue.
 */
#include <Python.h>
#include <unistd.h>

#define PYDI_HELPER_VERSION "0.1.0"

/*
 * Hook point: BPF uprobes attach here. It is written in assembly so that its
 * first instruction is a single 5-byte NOP: the kernel's optimized uprobe
 * replaces exactly that with a call, instead of trapping and single-stepping a
 * compiler-chosen prologue instruction (~10 us per hit).
 *
 * void pydi_hook_event(void *tstate, void *code, int line, int event,
 *                      void *value);
 */
__asm__(".text\n"
	".globl pydi_hook_event\n"
	".type pydi_hook_event, @function\n"
	"pydi_hook_event:\n"
	"\t.byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n"
	"\tret\n"
	".size pydi_hook_event, .-pydi_hook_event\n");

static PyObject *
helper_hello(PyObject *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	return Py_BuildValue("{s:s,s:i,s:O}", "helper_version",
			     PYDI_HELPER_VERSION, "pid", (int)getpid(),
			     "hooks_active", Py_False);
}

static PyMethodDef helper_methods[] = {
	{"hello", helper_hello, METH_NOARGS, "Describe the helper."},
	{NULL, NULL, 0, NULL},
};

static struct PyModuleDef helper_module = {
	PyModuleDef_HEAD_INIT, "_pydi_helper", NULL, -1, helper_methods,
	NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__pydi_helper(void)
{
	return PyModule_Create(&helper_module);
}
