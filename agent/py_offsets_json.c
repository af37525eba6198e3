// SPDX-License-Identifier: MIT
/* struct py_offsets as JSON: `pydi -j proc offsets PID`, and the offsets
 * probe test that checks every field against the live interpreter. */
#include <jansson.h>
#include <stddef.h>

#include "py_offsets.h"
#include "py_offsets_json.h"

#define OFF(f) { #f, offsetof(struct py_offsets, f), false }
#define FLAG(f) { #f, offsetof(struct py_offsets, f), true }

static const struct {
	const char *name;
	size_t at;
	bool is_flag;
} fields[] = {
	OFF(runtime_interpreters_head), OFF(runtime_finalizing),
	OFF(runtime_gilstate_tstate_current),
	OFF(interp_id), OFF(interp_next), OFF(interp_threads_head),
	OFF(interp_modules), OFF(interp_ceval_gil), OFF(gil_locked),
	OFF(gil_last_holder),
	OFF(tstate_next), OFF(tstate_interp), OFF(tstate_cframe),
	OFF(cframe_current_frame), OFF(tstate_current_frame),
	OFF(tstate_thread_id), OFF(tstate_native_thread_id),
	OFF(frame_previous), OFF(frame_code), OFF(frame_instr_ptr),
	OFF(frame_localsplus), OFF(frame_owner), FLAG(frame_code_is_stackref),
	OFF(object_type), OFF(varobject_size),
	OFF(type_name), OFF(type_flags), OFF(type_basicsize),
	OFF(type_dictoffset),
	OFF(code_filename), OFF(code_name), OFF(code_qualname),
	OFF(code_linetable), OFF(code_firstlineno), OFF(code_argcount),
	OFF(code_posonlyargcount), OFF(code_kwonlyargcount), OFF(code_flags),
	OFF(code_nlocalsplus), OFF(code_localsplusnames),
	OFF(code_localspluskinds), OFF(code_consts), OFF(code_code_adaptive),
	FLAG(code_lines_merged),
	OFF(tuple_size), OFF(tuple_item), OFF(list_size), OFF(list_item),
	OFF(bytes_size), OFF(bytes_sval),
	OFF(unicode_length), OFF(unicode_state), OFF(unicode_ascii_size),
	OFF(unicode_compact_size),
	OFF(float_value), OFF(long_tag), OFF(long_digit), FLAG(long_is_tagged),
	OFF(dict_used), OFF(dict_keys), OFF(dict_values),
};

json_t *py_offsets_to_json(const struct py_offsets *off)
{
	const char *base = (const char *)off;
	json_t *obj = json_object();

	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		json_t *value;

		if (fields[i].is_flag) {
			value = json_boolean(*(const bool *)(base + fields[i].at));
		} else {
			uint64_t v = *(const uint64_t *)(base + fields[i].at);

			value = v == PY_OFF_NONE ? json_null() :
				json_integer((json_int_t)v);
		}
		json_object_set_new(obj, fields[i].name, value);
	}
	return obj;
}
