/* SPDX-License-Identifier: MIT */
/*
 * What the probe program and userspace share: per-process CPython layouts,
 * the probe key and configuration, per-probe counters, and the capture
 * record written to the ring buffer. Fixed-width fields only; addresses in
 * the target travel as __u64.
 */
#ifndef PYDI_PYPROBE_H
#define PYDI_PYPROBE_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define PYPROBE_MAX_PROBES	1024	/* slots: one per (probe, process) */
#define PYPROBE_MAX_PROCS	256
#define PYPROBE_MAX_VARS	64	/* locals (localsplus slots) captured */
#define PYPROBE_MAX_FRAMES	32
#define PYPROBE_MAX_OBJS	64	/* objects per snapshot (breadth-first); power of 2 */
#define PYPROBE_DATA_MAX	16384	/* bytes of object records per snapshot; power of 2 */
/* Room past the budget so the verifier sees every write in bounds. */
#define PYPROBE_DATA_SLACK	2048
#define PYPROBE_STR_MAX		1024	/* bytes of one str/bytes payload */
#define PYPROBE_WIDTH_MAX	64	/* items of one container */

/* Hook events (same values as the helper's enum pydi_hook_event). */
#define PYPROBE_EV_ENTRY	1
#define PYPROBE_EV_RETURN	2
#define PYPROBE_EV_EXCEPTION	3
#define PYPROBE_EV_LINE		4
/* Or'ed in by the helper: it pairs this call's entry and end itself. */
#define PYPROBE_EV_PAIRED	0x100

/* The interpreter's cached small ints, -5 to 256: known by address. */
#define PYPROBE_SMALL_INT_MIN	(-5)
#define PYPROBE_SMALL_INTS	262

/* How instance attributes are found (per CPython minor). */
#define PYPROBE_ATTRS_NONE		0
#define PYPROBE_ATTRS_311		1	/* dict at obj-24, values at obj-32 */
#define PYPROBE_ATTRS_312		2	/* tagged dict-or-values at obj-24 */
#define PYPROBE_ATTRS_313		3	/* dict at obj-24, inline values at basicsize */

/* The layouts the BPF program reads, per target process (key: tgid). */
struct pyprobe_layout {
	__u64 tstate_cframe;		/* ~0 when the frame hangs off tstate */
	__u64 cframe_current_frame;
	__u64 tstate_current_frame;
	__u64 frame_previous;
	__u64 frame_code;
	__u64 frame_instr_ptr;
	__u64 frame_localsplus;
	__u64 frame_owner;
	__u64 object_type;
	__u64 type_flags;
	__u64 type_basicsize;
	__u64 type_dictoffset;
	__u64 type_cached_keys;		/* PyHeapTypeObject.ht_cached_keys */
	__u64 varobject_size;
	__u64 tuple_item;
	__u64 list_item;
	__u64 bytes_sval;
	__u64 unicode_state;
	__u64 unicode_length;
	__u64 unicode_ascii_size;
	__u64 unicode_compact_size;
	__u64 float_value;
	__u64 long_tag;
	__u64 long_digit;
	__u64 dict_used;
	__u64 dict_keys;
	__u64 dict_values;
	__u64 dict_values_items;	/* first value in PyDictValues */
	__u64 cell_ref;			/* PyCellObject.ob_ref */
	__u64 exc_args;			/* PyBaseExceptionObject.args */
	__u64 none_addr;		/* &_Py_NoneStruct */
	__u64 true_addr;
	__u64 false_addr;
	__u64 long_type;		/* &PyLong_Type: exact ints skip the flags read */
	__u64 unicode_type;		/* &PyUnicode_Type */
	__u64 float_type;		/* &PyFloat_Type */
	__u64 bool_type;
	__u64 set_type;
	__u64 frozenset_type;
	__u64 small_ints;		/* the int PYPROBE_SMALL_INT_MIN (0: unknown) */
	__u64 small_int_size;		/* bytes from one small int to the next */
	__u32 frame_owner_cstack;	/* owners >= this are shims without code */
	__u32 frame_owner_size;		/* 1 byte (char) */
	__u32 stackref_mask;		/* low bits to clear from frame slots */
	__u32 attrs_mode;		/* PYPROBE_ATTRS_* */
};

/* BPF matches {tgid, code, line, event}: a stale hook (its code replaced)
 * cannot match because the code pointer comes from the running frame. */
struct pyprobe_key {
	__u32 tgid;
	__u32 event;
	__u64 code;
	__s64 line;			/* 0 for function events */
};

#define PYPROBE_CAPTURE_ARGS	(1u << 0)
#define PYPROBE_CAPTURE_LOCALS	(1u << 1)
#define PYPROBE_CAPTURE_RETURN	(1u << 2)
#define PYPROBE_CAPTURE_STACK	(1u << 3)

struct pyprobe_config {
	__u32 slot;
	__u32 capture;			/* PYPROBE_CAPTURE_* */
	__u32 nvars;			/* localsplus slots to read */
	__u32 max_hits;			/* 0 = unlimited */
	__u64 rate_interval_ns;		/* 1e9 / snapshots per second; 0 = none */
	__u64 rate_burst_ns;		/* tolerance: burst * interval */
	__u64 cell_mask;		/* localsplus slots holding a cell */
	__u32 max_string;		/* bytes */
	__u32 max_width;		/* container items */
	__u32 max_depth;
	__u32 max_fields;
	__u32 max_frames;
	__u32 max_objs;
	__u32 generation;		/* bumped when a slot is reused */
	__u32 pairs_return;		/* entry events: remember the call */
};

/* Per-slot counters; updated with atomics (no spin locks in uprobes). */
struct pyprobe_stats {
	__u64 hits;			/* reached BPF and matched */
	__u64 emitted;			/* snapshots written */
	__u64 tat_ns;			/* rate limiter: theoretical arrival time */
	__u64 drop_rate;
	__u64 drop_max_hits;
	__u64 drop_ringbuf;
	__u64 drop_stale;		/* key matched, slot/generation did not */
};

struct pyprobe_frame {
	__u64 code;
	__u64 instr_ptr;
};

/* Object kinds, as BPF classifies them. */
enum pyprobe_obj_kind {
	PYOBJ_UNREADABLE = 0,
	PYOBJ_NONE,
	PYOBJ_BOOL,
	PYOBJ_INT,
	PYOBJ_FLOAT,
	PYOBJ_STR,
	PYOBJ_BYTES,
	PYOBJ_LIST,
	PYOBJ_TUPLE,
	PYOBJ_DICT,
	PYOBJ_SET,
	PYOBJ_OBJECT,		/* anything else; attributes follow if found */
};

/*
 * One captured object in the objects part of an event's data, 8-byte aligned. Payload by kind:
 * BOOL/NONE: none (the address says which). INT: tag word, then digits.
 * FLOAT: the double. STR: state word, length, then the raw data prefix.
 * BYTES: size, then the prefix. LIST/TUPLE: size, then item pointers.
 * DICT: used, then (key, value) pointer pairs. SET: size, then keys.
 * OBJECT: count, then (name, value) pointer pairs of its attributes.
 */
struct pyprobe_obj {
	__u64 addr;
	__u64 type;
	__u16 kind;
	__u16 depth;
	__u32 len;			/* payload bytes that follow */
};

#define PYPROBE_TRUNC_OBJS	(1u << 0)	/* object budget ran out */
#define PYPROBE_TRUNC_DATA	(1u << 1)	/* byte budget ran out */
#define PYPROBE_TRUNC_FRAMES	(1u << 2)

/* What every event starts with (as PyObject_HEAD: one list, two structs). */
#define PYPROBE_HEAD							\
	__u32 slot;							\
	__u32 tgid;							\
	__u32 tid;							\
	__u32 event;							\
	__s64 line;							\
	__u64 ts_ns;							\
	__u64 frame;							\
	__u64 code;							\
	__u64 value;		/* return value or exception */		\
	__u64 hit;		/* this snapshot's number (1-based) */	\
	__u32 nvars;							\
	__u32 nframes;							\
	__u32 nobjs;							\
	__u32 data_len;							\
	__u32 truncated;	/* PYPROBE_TRUNC_* */			\
	__u32 generation;

/*
 * On the ring buffer, only what was captured: data holds nvars localsplus
 * values (cells dereferenced), then nframes struct pyprobe_frame, then the
 * objects, data_len bytes in all. A fixed 1 KiB of vars and frames per event
 * cost more to copy, and filled the ring buffer faster, than the capture.
 */
struct pyprobe_event {
	PYPROBE_HEAD
	__u8 data[PYPROBE_DATA_MAX + PYPROBE_DATA_SLACK];
};

/* The same, spread out for decoding (agent/capture_wire.c): data is the
 * objects only. */
struct pyprobe_capture {
	PYPROBE_HEAD
	__u64 vars[PYPROBE_MAX_VARS];
	struct pyprobe_frame frames[PYPROBE_MAX_FRAMES];
	__u8 data[PYPROBE_DATA_MAX + PYPROBE_DATA_SLACK];
};

#endif /* PYDI_PYPROBE_H */
