/* SPDX-License-Identifier: MIT */
/*
 * CPython struct layouts for x86_64, default (non-debug, GIL) builds.
 *
 * 3.11 and 3.12 come from built-in tables. From 3.13 the interpreter
 * describes itself in _Py_DebugOffsets at the start of _PyRuntime; pydi
 * reads that and adds, from a small per-minor supplement, the few fields it
 * does not carry.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "py_offsets.h"
#include "pyprobe.h"

#define NONE PY_OFF_NONE

static const struct py_offsets table_311 = {
	.runtime_interpreters_head = 40,
	.runtime_finalizing = 24,
	.runtime_gilstate_tstate_current = 576,

	.interp_id = 48,
	.interp_next = 0,
	.interp_threads_head = 16,
	.interp_modules = 888,
	/* 3.11 has one GIL, in _PyRuntime; the holder is reached through
	 * runtime_gilstate_tstate_current instead. */
	.interp_ceval_gil = NONE,
	.gil_locked = NONE,
	.gil_last_holder = NONE,

	.tstate_next = 8,
	.tstate_interp = 16,
	.tstate_cframe = 56,
	.cframe_current_frame = 8,
	.tstate_current_frame = NONE,
	.tstate_thread_id = 152,
	.tstate_native_thread_id = 160,

	.frame_previous = 48,
	.frame_code = 32,
	.frame_instr_ptr = 56,
	.frame_localsplus = 72,
	.frame_owner = 69,
	.frame_code_is_stackref = false,

	.object_type = 8,
	.varobject_size = 16,

	.type_name = 24,
	.type_flags = 168,
	.type_basicsize = 32,
	.type_dictoffset = 288,

	.code_filename = 112,
	.code_name = 120,
	.code_qualname = 128,
	.code_linetable = 136,
	.code_firstlineno = 72,
	.code_argcount = 56,
	.code_posonlyargcount = 60,
	.code_kwonlyargcount = 64,
	.code_flags = 48,
	.code_nlocalsplus = 76,
	.code_localsplusnames = 96,
	.code_localspluskinds = 104,
	.code_consts = 24,
	.code_code_adaptive = 184,

	.tuple_size = 16,
	.tuple_item = 24,
	.list_size = 16,
	.list_item = 24,

	.bytes_size = 16,
	.bytes_sval = 32,

	/* 3.11 still has the wstr pointers, hence the larger headers. */
	.unicode_length = 16,
	.unicode_state = 32,
	.unicode_ascii_size = 48,
	.unicode_compact_size = 72,

	.float_value = 16,
	.long_tag = 16,
	.long_digit = 24,
	.long_is_tagged = false,
	.dict_values_items = 0,
	.attrs_mode = PYPROBE_ATTRS_311,
	.type_cached_keys = 872,
	.cell_ref = 16,
	.type_dict = 264,
	.func_code = 48,
	.module_dict = 16,
	.exc_args = 24,
	.frame_owner_cstack = UINT32_MAX,
	.interp_remote_debug = NONE,

	.dict_used = 16,
	.dict_keys = 32,
	.dict_values = 40,
};

static const struct py_offsets table_312 = {
	.runtime_interpreters_head = 40,
	.runtime_finalizing = 24,
	.runtime_gilstate_tstate_current = NONE,

	.interp_id = 8,
	.interp_next = 0,
	.interp_threads_head = 72,
	.interp_modules = 944,
	.interp_ceval_gil = 384,
	.gil_locked = 16,
	.gil_last_holder = 8,

	.tstate_next = 8,
	.tstate_interp = 16,
	.tstate_cframe = 56,
	.cframe_current_frame = 0,
	.tstate_current_frame = NONE,
	.tstate_thread_id = 136,
	.tstate_native_thread_id = 144,

	.frame_previous = 8,
	.frame_code = 0,
	.frame_instr_ptr = 56,
	.frame_localsplus = 72,
	.frame_owner = 70,
	.frame_code_is_stackref = false,

	.object_type = 8,
	.varobject_size = 16,

	.type_name = 24,
	.type_flags = 168,
	.type_basicsize = 32,
	.type_dictoffset = 288,

	.code_filename = 112,
	.code_name = 120,
	.code_qualname = 128,
	.code_linetable = 136,
	.code_firstlineno = 68,
	.code_argcount = 52,
	.code_posonlyargcount = 56,
	.code_kwonlyargcount = 60,
	.code_flags = 48,
	.code_nlocalsplus = 72,
	.code_localsplusnames = 96,
	.code_localspluskinds = 104,
	.code_consts = 24,
	.code_code_adaptive = 192,
	.code_lines_merged = true,

	.tuple_size = 16,
	.tuple_item = 24,
	.list_size = 16,
	.list_item = 24,

	.bytes_size = 16,
	.bytes_sval = 32,

	.unicode_length = 16,
	.unicode_state = 32,
	.unicode_ascii_size = 40,
	.unicode_compact_size = 56,

	.float_value = 16,
	.long_tag = 16,
	.long_digit = 24,
	.long_is_tagged = true,
	.dict_values_items = 0,
	.attrs_mode = PYPROBE_ATTRS_312,
	.type_cached_keys = 880,
	.cell_ref = 16,
	.type_dict = 264,
	.func_code = 48,
	.module_dict = 16,
	.exc_args = 24,
	.frame_owner_cstack = 3,
	.interp_remote_debug = NONE,

	.dict_used = 16,
	.dict_keys = 32,
	.dict_values = 40,
};

/*
 * _Py_DebugOffsets as each minor lays it out: an 8-byte cookie, then
 * uint64_t values in groups, most opening with the size of the struct they
 * describe. The member names are ours; only their order and count must
 * match CPython. Groups after the last one pydi reads are left out, so
 * growth at the tail of the real struct does not concern us.
 */
struct debug_offsets_313 {
	char cookie[8];
	uint64_t version;
	uint64_t free_threaded;
	struct {
		uint64_t size, finalizing, interpreters_head;
	} runtime;
	struct {
		uint64_t size, id, next, threads_head, gc, modules, sysdict,
			 builtins, ceval_gil, gil, gil_enabled, gil_locked,
			 gil_holder;
	} interp;
	struct {
		uint64_t size, prev, next, interp, current_frame, thread_id,
			 native_thread_id, datastack_chunk, status;
	} tstate;
	struct {
		uint64_t size, previous, executable, instr_ptr, localsplus,
			 owner;
	} frame;
	struct {
		uint64_t size, filename, name, qualname, linetable,
			 firstlineno, argcount, localsplusnames,
			 localspluskinds, code_adaptive;
	} code;
	struct {
		uint64_t size, ob_type;
	} object;
	struct {
		uint64_t size, tp_name, tp_repr, tp_flags;
	} type;
	struct {
		uint64_t size, ob_item, ob_size;
	} tuple, list;
	struct {
		uint64_t size, ma_keys, ma_values;
	} dict;
	struct {
		uint64_t size, ob_fval;
	} float_obj;
	struct {
		uint64_t size, lv_tag, ob_digit;
	} long_obj;
	struct {
		uint64_t size, ob_size, ob_sval;
	} bytes;
	struct {
		uint64_t size, state, length, ascii_size;
	} unicode;
};

/* 3.14 inserts values into several groups and a set group before dict. */
struct debug_offsets_314 {
	char cookie[8];
	uint64_t version;
	uint64_t free_threaded;
	struct {
		uint64_t size, finalizing, interpreters_head;
	} runtime;
	struct {
		uint64_t size, id, next, threads_head, threads_main, gc,
			 modules, sysdict, builtins, ceval_gil, gil,
			 gil_enabled, gil_locked, gil_holder,
			 code_object_generation, tlbc_generation;
	} interp;
	struct {
		uint64_t size, prev, next, interp, current_frame, thread_id,
			 native_thread_id, datastack_chunk, status;
	} tstate;
	struct {
		uint64_t size, previous, executable, instr_ptr, localsplus,
			 owner, stackpointer, tlbc_index;
	} frame;
	struct {
		uint64_t size, filename, name, qualname, linetable,
			 firstlineno, argcount, localsplusnames,
			 localspluskinds, code_adaptive, tlbc;
	} code;
	struct {
		uint64_t size, ob_type;
	} object;
	struct {
		uint64_t size, tp_name, tp_repr, tp_flags;
	} type;
	struct {
		uint64_t size, ob_item, ob_size;
	} tuple, list;
	struct {
		uint64_t size, used, table, mask;
	} set;
	struct {
		uint64_t size, ma_keys, ma_values;
	} dict;
	struct {
		uint64_t size, ob_fval;
	} float_obj;
	struct {
		uint64_t size, lv_tag, ob_digit;
	} long_obj;
	struct {
		uint64_t size, ob_size, ob_sval;
	} bytes;
	struct {
		uint64_t size, state, length, ascii_size;
	} unicode;
};

/* 3.14's tail, after the groups both minors share: PEP 768's fields. */
struct debug_tail_314 {
	struct debug_offsets_314 head;
	struct {
		uint64_t size, collecting;
	} gc;
	struct {
		uint64_t size, gi_name, gi_iframe, gi_frame_state;
	} gen;
	struct {
		uint64_t next, prev;
	} llist_node;
	struct {
		uint64_t eval_breaker, remote_debugger_support,
			 remote_debugging_enabled, debugger_pending_call,
			 debugger_script_path, debugger_script_path_size;
	} debugger;
};

/* PEP 768's script path buffer: a constant that confirms the tail. */
#define DEBUGGER_SCRIPT_PATH_SIZE 512


/* Where, in bytes from the start of _Py_DebugOffsets, each value pydi
 * reads sits for one minor. */
struct debug_layout {
	size_t len;
	size_t version, free_threaded;
	size_t runtime_size, runtime_finalizing, runtime_interpreters_head;
	size_t interp_size, interp_id, interp_next, interp_threads_head,
	       interp_modules, interp_ceval_gil, interp_gil, interp_gil_locked,
	       interp_gil_holder;
	size_t tstate_size, tstate_next, tstate_interp, tstate_current_frame,
	       tstate_thread_id, tstate_native_thread_id;
	size_t frame_size, frame_previous, frame_executable, frame_instr_ptr,
	       frame_localsplus, frame_owner;
	size_t code_size, code_filename, code_name, code_qualname,
	       code_linetable, code_firstlineno, code_argcount,
	       code_localsplusnames, code_localspluskinds, code_adaptive;
	size_t object_size, object_type;
	size_t type_size, type_name, type_flags;
	size_t tuple_size, tuple_item, tuple_ob_size;
	size_t list_size, list_item, list_ob_size;
	size_t dict_size, dict_keys, dict_values;
	size_t float_size, float_value;
	size_t long_size, long_tag, long_digit;
	size_t bytes_size, bytes_ob_size, bytes_sval;
	size_t unicode_size, unicode_state, unicode_length, unicode_ascii_size;
};

/* Works for any debug_offsets_3xx: the member names are shared. */
#define DEBUG_LAYOUT(T) {						\
	.len = sizeof(T),						\
	.version = offsetof(T, version),				\
	.free_threaded = offsetof(T, free_threaded),			\
	.runtime_size = offsetof(T, runtime.size),			\
	.runtime_finalizing = offsetof(T, runtime.finalizing),		\
	.runtime_interpreters_head = offsetof(T, runtime.interpreters_head), \
	.interp_size = offsetof(T, interp.size),			\
	.interp_id = offsetof(T, interp.id),				\
	.interp_next = offsetof(T, interp.next),			\
	.interp_threads_head = offsetof(T, interp.threads_head),	\
	.interp_modules = offsetof(T, interp.modules),			\
	.interp_ceval_gil = offsetof(T, interp.ceval_gil),		\
	.interp_gil = offsetof(T, interp.gil),				\
	.interp_gil_locked = offsetof(T, interp.gil_locked),		\
	.interp_gil_holder = offsetof(T, interp.gil_holder),		\
	.tstate_size = offsetof(T, tstate.size),			\
	.tstate_next = offsetof(T, tstate.next),			\
	.tstate_interp = offsetof(T, tstate.interp),			\
	.tstate_current_frame = offsetof(T, tstate.current_frame),	\
	.tstate_thread_id = offsetof(T, tstate.thread_id),		\
	.tstate_native_thread_id = offsetof(T, tstate.native_thread_id), \
	.frame_size = offsetof(T, frame.size),				\
	.frame_previous = offsetof(T, frame.previous),			\
	.frame_executable = offsetof(T, frame.executable),		\
	.frame_instr_ptr = offsetof(T, frame.instr_ptr),		\
	.frame_localsplus = offsetof(T, frame.localsplus),		\
	.frame_owner = offsetof(T, frame.owner),			\
	.code_size = offsetof(T, code.size),				\
	.code_filename = offsetof(T, code.filename),			\
	.code_name = offsetof(T, code.name),				\
	.code_qualname = offsetof(T, code.qualname),			\
	.code_linetable = offsetof(T, code.linetable),			\
	.code_firstlineno = offsetof(T, code.firstlineno),		\
	.code_argcount = offsetof(T, code.argcount),			\
	.code_localsplusnames = offsetof(T, code.localsplusnames),	\
	.code_localspluskinds = offsetof(T, code.localspluskinds),	\
	.code_adaptive = offsetof(T, code.code_adaptive),		\
	.object_size = offsetof(T, object.size),			\
	.object_type = offsetof(T, object.ob_type),			\
	.type_size = offsetof(T, type.size),				\
	.type_name = offsetof(T, type.tp_name), \
	.type_flags = offsetof(T, type.tp_flags),			\
	.tuple_size = offsetof(T, tuple.size),				\
	.tuple_item = offsetof(T, tuple.ob_item),			\
	.tuple_ob_size = offsetof(T, tuple.ob_size),			\
	.list_size = offsetof(T, list.size),				\
	.list_item = offsetof(T, list.ob_item), \
	.list_ob_size = offsetof(T, list.ob_size),			\
	.dict_size = offsetof(T, dict.size),				\
	.dict_keys = offsetof(T, dict.ma_keys), \
	.dict_values = offsetof(T, dict.ma_values),			\
	.float_size = offsetof(T, float_obj.size),			\
	.float_value = offsetof(T, float_obj.ob_fval),			\
	.long_size = offsetof(T, long_obj.size),			\
	.long_tag = offsetof(T, long_obj.lv_tag),			\
	.long_digit = offsetof(T, long_obj.ob_digit),			\
	.bytes_size = offsetof(T, bytes.size),				\
	.bytes_ob_size = offsetof(T, bytes.ob_size),			\
	.bytes_sval = offsetof(T, bytes.ob_sval),			\
	.unicode_size = offsetof(T, unicode.size),			\
	.unicode_state = offsetof(T, unicode.state),			\
	.unicode_length = offsetof(T, unicode.length),			\
	.unicode_ascii_size = offsetof(T, unicode.ascii_size),		\
}

/*
 * What _Py_DebugOffsets leaves out, for GIL builds. code_argcount is not
 * supplied but expected: the supplied code fields sit beside it, so if the
 * target disagrees about argcount it disagrees about them too.
 */
struct debug_supplement {
	uint64_t expect_code_argcount;
	uint64_t code_posonlyargcount;
	uint64_t code_kwonlyargcount;
	uint64_t code_flags;
	uint64_t code_nlocalsplus;
	uint64_t code_consts;
	uint64_t type_basicsize;
	uint64_t type_dictoffset;
	uint64_t dict_used;
	uint64_t unicode_compact_size;
	bool frame_code_is_stackref;
};

static const struct debug_supplement supplement_313 = {
	.expect_code_argcount = 52,
	.code_posonlyargcount = 56,
	.code_kwonlyargcount = 60,
	.code_flags = 48,
	.code_nlocalsplus = 72,
	.code_consts = 24,
	.type_basicsize = 32,
	.type_dictoffset = 288,
	.dict_used = 16,
	.unicode_compact_size = 56,
	.frame_code_is_stackref = false,
};

static const struct debug_supplement supplement_314 = {
	.expect_code_argcount = 52,
	.code_posonlyargcount = 56,
	.code_kwonlyargcount = 60,
	.code_flags = 48,
	.code_nlocalsplus = 72,
	.code_consts = 24,
	.type_basicsize = 32,
	.type_dictoffset = 288,
	.dict_used = 16,
	.unicode_compact_size = 56,
	.frame_code_is_stackref = true,
};

static const struct debug_layout layout_313 =
	DEBUG_LAYOUT(struct debug_offsets_313);
static const struct debug_layout layout_314 =
	DEBUG_LAYOUT(struct debug_offsets_314);

/* Every 3.x minor pydi knows, and how it learns that minor's layouts. */
struct minor_support {
	int minor;
	const struct py_offsets *table;
	const struct debug_layout *layout;
	const struct debug_supplement *supplement;
	bool untested;
	/* Byte offsets in _Py_DebugOffsets of PEP 768's remote_debugging_enabled
	 * and of the script path size that confirms it; 0 = none. */
	size_t remote_debug_at, script_path_size_at;
};

static const struct minor_support minors[] = {
	{ .minor = 11, .table = &table_311 },
	/* Checked against a 3.12.1 build, but not yet in the product's
	 * test matrix. */
	{ .minor = 12, .table = &table_312, .untested = true },
	{ .minor = 13, .layout = &layout_313, .supplement = &supplement_313 },
	{ .minor = 14, .layout = &layout_314, .supplement = &supplement_314,
	  .remote_debug_at = offsetof(struct debug_tail_314,
				      debugger.remote_debugging_enabled),
	  .script_path_size_at = offsetof(struct debug_tail_314,
					  debugger.debugger_script_path_size) },
};

static const struct minor_support *
find_minor(const struct py_version *v)
{
	size_t i;

	if (v->major != 3)
		return NULL;
	for (i = 0; i < sizeof(minors) / sizeof(minors[0]); i++) {
		if (minors[i].minor == v->minor)
			return &minors[i];
	}
	return NULL;
}

void
py_version_from_hex(uint32_t hex, struct py_version *v)
{
	v->major = (int)((hex >> 24) & 0xff);
	v->minor = (int)((hex >> 16) & 0xff);
	v->micro = (int)((hex >> 8) & 0xff);
	v->release_level = (int)((hex >> 4) & 0xf);
	v->serial = (int)(hex & 0xf);
	v->hex = hex;
}

bool
py_offsets_have_table(const struct py_version *v)
{
	const struct minor_support *m = find_minor(v);

	return m && m->table;
}

bool
py_offsets_untested(const struct py_version *v)
{
	const struct minor_support *m = find_minor(v);

	return m && m->untested;
}

int
py_offsets_from_table(const struct py_version *v, struct py_offsets *off)
{
	const struct minor_support *m = find_minor(v);

	if (!m || !m->table)
		return -ENOTSUP;
	*off = *m->table;
	return 0;
}

/* The caller has checked that pos + 8 lies within the raw bytes. */
static uint64_t
word_at(const uint8_t *raw, size_t pos)
{
	uint64_t value;

	memcpy(&value, raw + pos, sizeof(value));
	return value;
}

/* Does a field of width bytes at offset lie inside a struct of size bytes? */
static bool
fits(uint64_t offset, uint64_t width, uint64_t size)
{
	return offset <= size && width <= size - offset;
}

/*
 * Catch a layout that shifted under us (a patch release inserting a value):
 * misread words rarely keep every offset inside its struct's size.
 */
static bool
debug_values_plausible(const struct debug_layout *l, const uint8_t *raw)
{
	const uint64_t ptr = 8, u32 = 4, u8 = 1;
	uint64_t rt = word_at(raw, l->runtime_size);
	uint64_t is = word_at(raw, l->interp_size);
	uint64_t ts = word_at(raw, l->tstate_size);
	uint64_t fr = word_at(raw, l->frame_size);
	uint64_t co = word_at(raw, l->code_size);
	uint64_t gil = word_at(raw, l->interp_gil);
	uint64_t unicode = word_at(raw, l->unicode_size);
#define IN(field, width, size) fits(word_at(raw, l->field), (width), (size))
#define SIZE(group) word_at(raw, l->group##_size)

	return IN(runtime_finalizing, ptr, rt) &&
	       IN(runtime_interpreters_head, ptr, rt) &&
	       IN(interp_id, ptr, is) && IN(interp_next, ptr, is) &&
	       IN(interp_threads_head, ptr, is) &&
	       IN(interp_modules, ptr, is) && IN(interp_ceval_gil, ptr, is) &&
	       IN(interp_gil_locked, u32, is) &&
	       IN(interp_gil_holder, ptr, is) &&
	       gil <= word_at(raw, l->interp_gil_locked) &&
	       gil <= word_at(raw, l->interp_gil_holder) &&
	       IN(tstate_next, ptr, ts) && IN(tstate_interp, ptr, ts) &&
	       IN(tstate_current_frame, ptr, ts) &&
	       IN(tstate_thread_id, ptr, ts) &&
	       IN(tstate_native_thread_id, ptr, ts) &&
	       IN(frame_previous, ptr, fr) && IN(frame_executable, ptr, fr) &&
	       IN(frame_instr_ptr, ptr, fr) && IN(frame_localsplus, ptr, fr) &&
	       IN(frame_owner, u8, fr) &&
	       IN(code_filename, ptr, co) && IN(code_name, ptr, co) &&
	       IN(code_qualname, ptr, co) && IN(code_linetable, ptr, co) &&
	       IN(code_firstlineno, u32, co) && IN(code_argcount, u32, co) &&
	       IN(code_localsplusnames, ptr, co) &&
	       IN(code_localspluskinds, ptr, co) &&
	       IN(code_adaptive, u8, co) &&
	       IN(object_type, ptr, SIZE(object)) &&
	       IN(type_name, ptr, SIZE(type)) &&
	       IN(type_flags, ptr, SIZE(type)) &&
	       IN(tuple_item, ptr, SIZE(tuple)) &&
	       IN(tuple_ob_size, ptr, SIZE(tuple)) &&
	       IN(list_item, ptr, SIZE(list)) &&
	       IN(list_ob_size, ptr, SIZE(list)) &&
	       IN(dict_keys, ptr, SIZE(dict)) &&
	       IN(dict_values, ptr, SIZE(dict)) &&
	       IN(float_value, ptr, SIZE(float)) &&
	       IN(long_tag, ptr, SIZE(long)) &&
	       IN(long_digit, u32, SIZE(long)) &&
	       IN(bytes_ob_size, ptr, SIZE(bytes)) &&
	       IN(bytes_sval, u8, SIZE(bytes)) &&
	       IN(unicode_state, u32, unicode) &&
	       IN(unicode_length, ptr, unicode) &&
	       word_at(raw, l->unicode_ascii_size) <= unicode;
#undef SIZE
#undef IN
}

/* Start from "nothing known" so a field neither source sets stays NONE. */
static void
offsets_clear(struct py_offsets *off)
{
	memset(off, 0xff, sizeof(*off));
	off->frame_code_is_stackref = false;
	off->code_lines_merged = false;
	off->long_is_tagged = false;
}

static void
fill_from_debug(const struct debug_layout *l, const uint8_t *raw,
		struct py_offsets *off)
{
#define GET(field) word_at(raw, l->field)
	uint64_t gil = GET(interp_gil);

	off->runtime_interpreters_head = GET(runtime_interpreters_head);
	off->runtime_finalizing = GET(runtime_finalizing);

	off->interp_id = GET(interp_id);
	off->interp_next = GET(interp_next);
	off->interp_threads_head = GET(interp_threads_head);
	off->interp_modules = GET(interp_modules);
	off->interp_ceval_gil = GET(interp_ceval_gil);
	/*
	 * _Py_DebugOffsets places the GIL's fields within the interpreter's
	 * own _gil; pydi follows ceval.gil, which may point to a shared one.
	 */
	off->gil_locked = GET(interp_gil_locked) - gil;
	off->gil_last_holder = GET(interp_gil_holder) - gil;

	off->tstate_next = GET(tstate_next);
	off->tstate_interp = GET(tstate_interp);
	off->tstate_current_frame = GET(tstate_current_frame);
	off->tstate_thread_id = GET(tstate_thread_id);
	off->tstate_native_thread_id = GET(tstate_native_thread_id);

	off->frame_previous = GET(frame_previous);
	off->frame_code = GET(frame_executable);
	off->frame_instr_ptr = GET(frame_instr_ptr);
	off->frame_localsplus = GET(frame_localsplus);
	off->frame_owner = GET(frame_owner);

	off->object_type = GET(object_type);
	off->varobject_size = GET(tuple_ob_size);

	off->type_name = GET(type_name);
	off->type_flags = GET(type_flags);

	off->code_filename = GET(code_filename);
	off->code_name = GET(code_name);
	off->code_qualname = GET(code_qualname);
	off->code_linetable = GET(code_linetable);
	off->code_firstlineno = GET(code_firstlineno);
	off->code_argcount = GET(code_argcount);
	off->code_localsplusnames = GET(code_localsplusnames);
	off->code_localspluskinds = GET(code_localspluskinds);
	off->code_code_adaptive = GET(code_adaptive);

	off->tuple_size = GET(tuple_ob_size);
	off->tuple_item = GET(tuple_item);
	off->list_size = GET(list_ob_size);
	off->list_item = GET(list_item);

	off->bytes_size = GET(bytes_ob_size);
	off->bytes_sval = GET(bytes_sval);

	off->unicode_length = GET(unicode_length);
	off->unicode_state = GET(unicode_state);
	off->unicode_ascii_size = GET(unicode_ascii_size);

	off->float_value = GET(float_value);
	off->long_tag = GET(long_tag);
	off->long_digit = GET(long_digit);
	/* Every minor with _Py_DebugOffsets has the 3.12 lv_tag. */
	off->long_is_tagged = true;

	off->dict_keys = GET(dict_keys);
	off->dict_values = GET(dict_values);
#undef GET
}

static void
fill_from_supplement(const struct debug_supplement *s,
		     struct py_offsets *off)
{
	off->code_posonlyargcount = s->code_posonlyargcount;
	off->code_kwonlyargcount = s->code_kwonlyargcount;
	off->code_flags = s->code_flags;
	off->code_nlocalsplus = s->code_nlocalsplus;
	off->code_consts = s->code_consts;
	off->type_basicsize = s->type_basicsize;
	off->type_dictoffset = s->type_dictoffset;
	off->dict_used = s->dict_used;
	off->unicode_compact_size = s->unicode_compact_size;
	off->frame_code_is_stackref = s->frame_code_is_stackref;
	/* 3.13 and 3.14 agree on these; checked against live interpreters. */
	off->dict_values_items = 8;
	off->attrs_mode = PYPROBE_ATTRS_313;
	off->type_cached_keys = 880;
	off->cell_ref = 16;
	off->type_dict = 264;
	off->func_code = 48;
	off->module_dict = 16;
	off->exc_args = 24;
	off->frame_owner_cstack = 3;
	off->code_lines_merged = true;
}

/* The cookie and version sit at the same place in every minor. */
#define DEBUG_HEAD_LEN (sizeof(PY_DEBUG_OFFSETS_COOKIE) - 1 + sizeof(uint64_t))

int
py_offsets_from_debug(const struct py_version *v, const void *raw,
		      size_t raw_len, struct py_offsets *off,
		      bool *free_threaded)
{
	const size_t cookie_len = sizeof(PY_DEBUG_OFFSETS_COOKIE) - 1;
	const uint8_t *bytes = raw;
	const struct minor_support *m;
	struct py_version embedded;
	struct py_offsets result;

	*free_threaded = false;
	if (raw_len < DEBUG_HEAD_LEN ||
	    memcmp(bytes, PY_DEBUG_OFFSETS_COOKIE, cookie_len) != 0)
		return -EINVAL;

	py_version_from_hex((uint32_t)word_at(bytes, cookie_len), &embedded);
	if (embedded.major != v->major || embedded.minor != v->minor)
		return -EINVAL;

	m = find_minor(v);
	if (!m || !m->layout)
		return -ENOTSUP;
	if (raw_len < m->layout->len)
		return -EINVAL;

	*free_threaded = word_at(bytes, m->layout->free_threaded) != 0;
	/* The supplement describes GIL builds only. */
	if (*free_threaded || !debug_values_plausible(m->layout, bytes))
		return -ENOTSUP;

	offsets_clear(&result);
	fill_from_debug(m->layout, bytes, &result);
	if (result.code_argcount != m->supplement->expect_code_argcount)
		return -ENOTSUP;
	fill_from_supplement(m->supplement, &result);
	result.interp_remote_debug = PY_OFF_NONE;
	if (m->remote_debug_at && raw_len >= m->script_path_size_at + 8 &&
	    word_at(bytes, m->script_path_size_at) == DEBUGGER_SCRIPT_PATH_SIZE)
		result.interp_remote_debug = word_at(bytes, m->remote_debug_at);
	*off = result;
	return 0;
}
