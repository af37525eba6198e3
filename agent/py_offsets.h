/* SPDX-License-Identifier: MIT */
/*
 * CPython struct layouts, as data. One table per minor version produces the
 * same struct py_offsets; from 3.13 the table is filled from the target's own
 * _Py_DebugOffsets (whose layout differs by minor) plus the fields it lacks.
 * Nothing outside py_offsets.c looks at the minor version to find a field.
 *
 * Every value is a byte offset from the start of the named object, except
 * the *_size fields, which are sizes in bytes. An offset the version does not
 * have is PY_OFF_NONE.
 */
#ifndef PYDI_PY_OFFSETS_H
#define PYDI_PY_OFFSETS_H

#include <stdbool.h>
#include <stdint.h>

#define PY_OFF_NONE UINT64_MAX

enum py_offsets_source {
	PY_OFFSETS_NONE = 0,
	PY_OFFSETS_TABLE,		/* built-in table (3.11, 3.12) */
	PY_OFFSETS_DEBUG_OFFSETS,	/* read from _Py_DebugOffsets (3.13+) */
};

struct py_offsets {
	/* _PyRuntimeState */
	uint64_t runtime_interpreters_head;
	uint64_t runtime_finalizing;
	/* 3.11: _PyRuntime.gilstate.tstate_current (the GIL holder) */
	uint64_t runtime_gilstate_tstate_current;

	/* PyInterpreterState */
	uint64_t interp_id;
	uint64_t interp_next;
	uint64_t interp_threads_head;
	uint64_t interp_modules;
	/* 3.14+: interp->config.remote_debug (int; 0 = the owner opted out of
	 * remote debugging with -X disable-remote-debug) */
	uint64_t interp_remote_debug;		/* interp->imports.modules (3.12+) / interp->modules */
	uint64_t interp_ceval_gil;		/* interp->ceval.gil (3.12+): struct _gil_runtime_state * */
	uint64_t gil_locked;			/* in struct _gil_runtime_state */
	uint64_t gil_last_holder;		/* in struct _gil_runtime_state */

	/* PyThreadState */
	uint64_t tstate_next;
	uint64_t tstate_interp;
	uint64_t tstate_cframe;			/* 3.11/3.12: tstate->cframe; NONE from 3.13 */
	uint64_t cframe_current_frame;		/* in _PyCFrame (3.11/3.12) */
	uint64_t tstate_current_frame;		/* 3.13+: tstate->current_frame */
	uint64_t tstate_thread_id;
	uint64_t tstate_native_thread_id;

	/* _PyInterpreterFrame */
	uint64_t frame_previous;
	uint64_t frame_code;			/* f_code (3.11/3.12) / f_executable (3.13+) */
	uint64_t frame_instr_ptr;		/* prev_instr (3.11/3.12) / instr_ptr (3.13+) */
	uint64_t frame_localsplus;
	uint64_t frame_owner;
	bool frame_code_is_stackref;		/* 3.14: f_executable is a tagged _PyStackRef */

	/* PyObject / PyVarObject */
	uint64_t object_type;			/* ob_type */
	uint64_t varobject_size;		/* ob_size */

	/* PyTypeObject */
	uint64_t type_name;			/* tp_name (char *) */
	uint64_t type_flags;
	uint64_t type_basicsize;
	uint64_t type_dictoffset;

	/* PyCodeObject */
	uint64_t code_filename;
	uint64_t code_name;
	uint64_t code_qualname;
	uint64_t code_linetable;
	uint64_t code_firstlineno;		/* int */
	uint64_t code_argcount;			/* int */
	uint64_t code_posonlyargcount;		/* int */
	uint64_t code_kwonlyargcount;		/* int */
	uint64_t code_flags;			/* int */
	uint64_t code_nlocalsplus;		/* int */
	uint64_t code_localsplusnames;
	uint64_t code_localspluskinds;
	uint64_t code_consts;
	uint64_t code_code_adaptive;		/* start of the bytecode */
	/* 3.12+: co_lines() merges consecutive entries with the same line */
	bool code_lines_merged;

	/* PyTupleObject, PyListObject */
	uint64_t tuple_size;
	uint64_t tuple_item;
	uint64_t list_size;
	uint64_t list_item;

	/* PyBytesObject */
	uint64_t bytes_size;
	uint64_t bytes_sval;

	/* PyUnicodeObject: compact strings keep their data right after the
	 * PyASCIIObject (ascii) or PyCompactUnicodeObject (non-ascii) header. */
	uint64_t unicode_length;
	uint64_t unicode_state;
	uint64_t unicode_ascii_size;		/* sizeof(PyASCIIObject) */
	uint64_t unicode_compact_size;		/* sizeof(PyCompactUnicodeObject) */

	/* PyFloatObject, PyLongObject */
	uint64_t float_value;
	uint64_t long_tag;			/* ob_size (3.11) / lv_tag (3.12+) */
	uint64_t long_digit;
	bool long_is_tagged;			/* 3.12+: lv_tag = ndigits << 3 | sign */

	/* PyDictObject */
	uint64_t dict_used;
	uint64_t dict_keys;
	uint64_t dict_values;
	uint64_t dict_values_items;		/* first value inside PyDictValues */

	/* Where instance attributes live: PYPROBE_ATTRS_* (bpf/pyprobe.h) */
	uint32_t attrs_mode;
	uint64_t type_cached_keys;		/* PyHeapTypeObject.ht_cached_keys */

	uint64_t cell_ref;			/* PyCellObject.ob_ref */
	uint64_t type_dict;			/* PyTypeObject.tp_dict (heap types) */
	uint64_t func_code;			/* PyFunctionObject.func_code */
	uint64_t module_dict;			/* PyModuleObject.md_dict */
	uint64_t exc_args;			/* PyBaseExceptionObject.args */
	/* _PyInterpreterFrame.owner values from this one up carry no Python
	 * code (C-stack and interpreter shims); UINT32_MAX if none exist */
	uint32_t frame_owner_cstack;
};

struct py_version {
	int major, minor, micro;
	int release_level;			/* 0xA alpha, 0xB beta, 0xC rc, 0xF final */
	int serial;
	uint32_t hex;				/* the raw Py_Version / PY_VERSION_HEX */
};

/* Decode a PY_VERSION_HEX value as Py_Version holds it. */
void py_version_from_hex(uint32_t hex, struct py_version *v);

/* Is there a built-in table for this version (3.11, 3.12)? */
bool py_offsets_have_table(const struct py_version *v);

/* Is this version marked untested (3.12: no interpreter here to test on)? */
bool py_offsets_untested(const struct py_version *v);

/* Fill *off from the built-in table for v. Returns 0 or -ENOTSUP. */
int py_offsets_from_table(const struct py_version *v, struct py_offsets *off);

#define PY_DEBUG_OFFSETS_COOKIE "xdebugpy"
/* Bytes of _PyRuntime to read to hold any supported _Py_DebugOffsets. */
#define PY_DEBUG_OFFSETS_MAX 1024

/*
 * Fill *off from the raw bytes at the start of _PyRuntime (3.13+). Checks the
 * cookie, that the embedded version matches v's minor, and reports whether
 * the build is free-threaded. Returns 0, -EINVAL (bad cookie or version
 * mismatch) or -ENOTSUP (a minor whose layout pydi does not know).
 */
int py_offsets_from_debug(const struct py_version *v, const void *raw,
			  size_t raw_len, struct py_offsets *off,
			  bool *free_threaded);

#endif /* PYDI_PY_OFFSETS_H */
