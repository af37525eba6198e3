// SPDX-License-Identifier: GPL-2.0
/*
 * pyprobe: match a hooked Python frame against the probe map and copy a
 * bounded, shallow capture of it into the ring buffer.
 *
 * Entered from the helper's pydi_hook_event (code or tstate, slot, line,
 * event, value, frame) — only targeted code reaches it — or, in --no-inject mode, from
 * _PyEval_EvalFrameDefault (tstate, frame), which sees C-entered frames only.
 * The GIL is held in both places, so the frame and its objects are
 * consistent while we read them. No Python code runs in the target.
 */
/*
 * Only pt_regs comes from the kernel, and its layout is ABI: without CO-RE
 * relocations libbpf need not parse the kernel's BTF (~5 MB) on every load.
 */
#define BPF_NO_PRESERVE_ACCESS_INDEX
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "pyprobe.h"

/* CPython tp_flags bits (stable since 3.0). */
#define TPFLAGS_MANAGED_DICT	(1ULL << 4)
#define TPFLAGS_INLINE_VALUES	(1ULL << 2)
#define TPFLAGS_LONG		(1ULL << 24)
#define TPFLAGS_LIST		(1ULL << 25)
#define TPFLAGS_TUPLE		(1ULL << 26)
#define TPFLAGS_BYTES		(1ULL << 27)
#define TPFLAGS_UNICODE		(1ULL << 28)
#define TPFLAGS_DICT		(1ULL << 29)

#define INT_DIGITS_MAX		8	/* 30-bit digits: 240-bit ints */

/*
 * libbpf 1.1's BPF_KPROBE names five arguments; the sixth is in r9. The
 * helper's hook point is x86-64 code, and what its first argument holds
 * depends on the sixth.
 */
#if !defined(__TARGET_ARCH_x86)
#error "pyprobe reads the hook's sixth argument from x86-64 registers"
#endif
#define PT_REGS_PARM6_FRAME(regs) ((regs)->r9)
#define DICT_KEYS_LOG2_INDEX	9	/* PyDictKeysObject.dk_log2_index_bytes */
#define DICT_KEYS_KIND		10	/* .dk_kind: 0 general, else unicode */
#define DICT_KEYS_NENTRIES	24	/* .dk_nentries */
#define DICT_KEYS_INDICES	32	/* .dk_indices */
#define SET_USED		24	/* PySetObject.used */
#define SET_MASK		32
#define SET_TABLE		40
#define MANAGED_DICT_AT		24	/* managed dict pointer: obj - 24 */
#define MANAGED_VALUES_AT	32	/* 3.11 values pointer: obj - 32 */

/*
 * An index the verifier can see is in bounds: the barrier stops the compiler
 * from dropping the mask because an earlier check already implied it.
 */
#define BOUNDED(v, mask) ({			\
	__u64 _v = (v);				\
	asm volatile("" : "+r"(_v));		\
	_v & (mask);				\
})

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4 * PYPROBE_MAX_PROBES);
	__type(key, struct pyprobe_key);
	__type(value, struct pyprobe_config);
} probes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, PYPROBE_MAX_PROBES);
	__type(key, __u32);
	__type(value, struct pyprobe_stats);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PYPROBE_MAX_PROCS);
	__type(key, __u32);
	__type(value, struct pyprobe_layout);
} layouts SEC(".maps");

/* Calls whose entry was captured: their return/exception is captured too,
 * whatever the rate limit says since, so a snapshot carries both. Only the
 * calls the helper does not pair itself (PYPROBE_EV_PAIRED) are kept here:
 * an insert and a delete cost ~0.4 us a call on the AMD EPYC VM. */
struct inflight_key {
	__u32 tgid;
	__u32 slot;
	__u64 frame;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct inflight_key);
	__type(value, __u64);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);	/* userspace may resize before load */
} events SEC(".maps");

struct work {
	__u64 addr;
	__u32 depth;
	__u32 pad;
};

struct scratch {
	struct pyprobe_event cap;
	struct work queue[PYPROBE_MAX_OBJS];
	__u32 head;
	__u32 tail;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_map SEC(".maps");

struct walk {
	struct scratch *sc;
	const struct pyprobe_layout *lay;
	const struct pyprobe_config *cfg;
	__u64 frame;
};

static __always_inline __u64 read_u64(__u64 addr)
{
	__u64 v = 0;

	bpf_probe_read_user(&v, sizeof(v), (const void *)addr);
	return v;
}

static __always_inline __u8 read_u8(__u64 addr)
{
	__u8 v = 0;

	bpf_probe_read_user(&v, sizeof(v), (const void *)addr);
	return v;
}

static __always_inline __u64 frame_code(const struct pyprobe_layout *lay,
					__u64 frame)
{
	return read_u64(frame + lay->frame_code) & ~(__u64)lay->stackref_mask;
}

static __always_inline __u64 current_frame(const struct pyprobe_layout *lay,
					   __u64 tstate)
{
	if (lay->tstate_cframe != ~0ULL)
		return read_u64(read_u64(tstate + lay->tstate_cframe) +
				lay->cframe_current_frame);
	return read_u64(tstate + lay->tstate_current_frame);
}

static __always_inline void push(struct scratch *sc, __u64 addr, __u32 depth)
{
	__u32 tail = sc->tail;

	if (!addr || tail >= PYPROBE_MAX_OBJS)
		return;
	sc->queue[BOUNDED(tail, PYPROBE_MAX_OBJS - 1)].addr = addr;
	sc->queue[BOUNDED(tail, PYPROBE_MAX_OBJS - 1)].depth = depth;
	sc->tail = tail + 1;
}

/* --- locals ------------------------------------------------------------ */

static long var_step(__u32 i, void *arg)
{
	struct walk *w = arg;
	struct scratch *sc = w->sc;
	__u64 *slot, v;

	if (i >= sc->cap.nvars || i >= PYPROBE_MAX_VARS)
		return 1;
	slot = (__u64 *)&sc->cap.data[BOUNDED(i * 8, PYPROBE_MAX_VARS * 8 - 1)];
	v = *slot & ~(__u64)w->lay->stackref_mask;
	/* Arguments captured by closures live in cells. */
	if (v && (w->cfg->cell_mask >> i) & 1)
		v = read_u64(v + w->lay->cell_ref);
	*slot = v;
	push(sc, v, 0);
	return 0;
}

/*
 * All the frame's slots in one read (each bpf_probe_read_user costs ~50 ns),
 * to the start of data: nothing is in it yet.
 */
static __always_inline void read_vars(struct walk *w)
{
	struct scratch *sc = w->sc;
	__u32 n = w->cfg->nvars;

	if (n > PYPROBE_MAX_VARS)
		n = PYPROBE_MAX_VARS;
	asm volatile("" : "+r"(n));
	if (n == 0 || n > PYPROBE_MAX_VARS)
		return;
	if (bpf_probe_read_user(sc->cap.data, n * 8,
				(const void *)(w->frame + w->lay->frame_localsplus)))
		return;
	sc->cap.nvars = n;
	sc->cap.data_len = n * 8;
	bpf_loop(PYPROBE_MAX_VARS, var_step, w, 0);
}

/* --- stack ------------------------------------------------------------- */

static long frame_step(__u32 i, void *arg)
{
	struct walk *w = arg;
	struct scratch *sc = w->sc;
	__u32 n = sc->cap.nframes;
	__u64 frame = w->frame;
	__u8 owner;

	if (!frame)
		return 1;
	if (n >= w->cfg->max_frames || n >= PYPROBE_MAX_FRAMES) {
		sc->cap.truncated |= PYPROBE_TRUNC_FRAMES;
		return 1;
	}
	owner = read_u8(frame + w->lay->frame_owner);
	/* C-stack and interpreter shim frames (3.12+) carry no Python code. */
	if (owner < w->lay->frame_owner_cstack) {
		/* After the vars, before any object: data_len < 1 KiB here. */
		struct pyprobe_frame *f = (struct pyprobe_frame *)
			&sc->cap.data[BOUNDED(sc->cap.data_len, PYPROBE_DATA_MAX - 1)];

		f->code = frame_code(w->lay, frame);
		f->instr_ptr = read_u64(frame + w->lay->frame_instr_ptr);
		sc->cap.data_len += sizeof(*f);
		sc->cap.nframes = n + 1;
	}
	w->frame = read_u64(frame + w->lay->frame_previous);
	return 0;
}

/* --- objects ----------------------------------------------------------- */

/* Append a payload word; false when the byte budget is spent. */
static __always_inline bool put_u64(struct scratch *sc, __u32 *len, __u64 v)
{
	__u32 off = sc->cap.data_len + sizeof(struct pyprobe_obj) + *len;

	if (off > PYPROBE_DATA_MAX - 8)
		return false;
	*(__u64 *)&sc->cap.data[BOUNDED(off, PYPROBE_DATA_MAX - 1)] = v;
	*len += 8;
	return true;
}

/* Copy n bytes (n <= PYPROBE_STR_MAX) of target memory into the payload. */
static __always_inline bool put_bytes(struct scratch *sc, __u32 *len,
				      __u64 src, __u32 n)
{
	__u32 off = sc->cap.data_len + sizeof(struct pyprobe_obj) + *len;

	if (n > PYPROBE_STR_MAX)
		n = PYPROBE_STR_MAX;
	if (off > PYPROBE_DATA_MAX - n)
		return false;
	/* The mask after the barrier is what the verifier checks. */
	asm volatile("" : "+r"(n));
	n &= PYPROBE_STR_MAX * 2 - 1;
	if (n)
		bpf_probe_read_user(&sc->cap.data[BOUNDED(off, PYPROBE_DATA_MAX - 1)],
				    n, (const void *)src);
	*len += (n + 7) & ~7U;
	return true;
}

struct pairs {
	struct walk *w;
	__u32 *len;
	__u32 depth;
	__u32 count;
	__u64 entries;		/* first entry */
	__u64 stride;		/* 24 general, 16 unicode */
	__u64 key_at;		/* key offset inside an entry */
	__u64 values;		/* split table values, or 0 */
	__u32 limit;
	bool full;
};

static long pair_step(__u32 i, void *arg)
{
	struct pairs *p = arg;
	struct scratch *sc = p->w->sc;
	__u64 entry = p->entries + i * p->stride, key, value;

	if (i >= p->limit || p->count >= p->w->cfg->max_width)
		return 1;
	key = read_u64(entry + p->key_at);
	if (!key)
		return 0;	/* deleted entry */
	value = p->values ? read_u64(p->values + 8 * i) :
			    read_u64(entry + p->key_at + 8);
	if (p->values && !value)
		return 0;	/* attribute not set on this instance */
	if (!put_u64(sc, p->len, key) || !put_u64(sc, p->len, value)) {
		p->full = true;
		return 1;
	}
	p->count++;
	if (p->depth + 1 <= p->w->cfg->max_depth) {
		push(sc, key, p->depth + 1);
		push(sc, value, p->depth + 1);
	}
	return 0;
}

/* (key, value) pairs of a dict's keys object; values != 0 for split tables. */
static __always_inline bool put_pairs(struct walk *w, __u32 *len, __u32 depth,
				      __u64 keys, __u64 values, __u64 used)
{
	struct pairs p = {
		.w = w, .len = len, .depth = depth, .values = values,
	};
	__u8 log2_index = read_u8(keys + DICT_KEYS_LOG2_INDEX);
	__u64 nentries = read_u64(keys + DICT_KEYS_NENTRIES);

	if (!put_u64(w->sc, len, used))
		return false;
	if (log2_index > 32)
		return true;
	p.entries = keys + DICT_KEYS_INDICES + (1ULL << log2_index);
	p.stride = read_u8(keys + DICT_KEYS_KIND) == 0 ? 24 : 16;
	p.key_at = p.stride == 24 ? 8 : 0;
	p.limit = nentries < PYPROBE_WIDTH_MAX ? nentries : PYPROBE_WIDTH_MAX;
	bpf_loop(PYPROBE_WIDTH_MAX, pair_step, &p, 0);
	return !p.full;
}

/* Instance attributes: where they live depends on the CPython minor. */
static __always_inline void put_attrs(struct walk *w, __u32 *len, __u32 depth,
				      __u64 addr, __u64 type, __u64 flags)
{
	const struct pyprobe_layout *lay = w->lay;
	__u64 dict = 0, values = 0, keys;

	if (lay->attrs_mode == PYPROBE_ATTRS_311 && (flags & TPFLAGS_MANAGED_DICT)) {
		dict = read_u64(addr - MANAGED_DICT_AT);
		if (!dict)
			values = read_u64(addr - MANAGED_VALUES_AT);
	} else if (lay->attrs_mode == PYPROBE_ATTRS_312 &&
		   (flags & TPFLAGS_MANAGED_DICT)) {
		__u64 tagged = read_u64(addr - MANAGED_DICT_AT);

		if (tagged & 1)
			values = tagged - 1;
		else
			dict = tagged;
	} else if (lay->attrs_mode == PYPROBE_ATTRS_313 &&
		   (flags & TPFLAGS_MANAGED_DICT)) {
		dict = read_u64(addr - MANAGED_DICT_AT);
		if (!dict && (flags & TPFLAGS_INLINE_VALUES))
			values = addr + read_u64(type + lay->type_basicsize);
	} else {
		__s64 dictoffset = (__s64)read_u64(type + lay->type_dictoffset);

		if (dictoffset > 0)
			dict = read_u64(addr + dictoffset);
	}
	if (dict) {
		put_pairs(w, len, depth, read_u64(dict + lay->dict_keys),
			  read_u64(dict + lay->dict_values) ?
			  read_u64(dict + lay->dict_values) + lay->dict_values_items : 0,
			  read_u64(dict + lay->dict_used));
	} else if (values) {
		keys = read_u64(type + lay->type_cached_keys);
		if (keys)
			put_pairs(w, len, depth, keys, values + lay->dict_values_items,
				  read_u64(keys + DICT_KEYS_NENTRIES));
	}
}

struct items {
	struct walk *w;
	__u32 *len;
	__u32 depth;
	__u64 array;
	__u32 n;
	__u64 stride;		/* 8 for list/tuple, 16 for set entries */
	__u32 count;
	bool full;
};

static long item_step(__u32 i, void *arg)
{
	struct items *it = arg;
	__u64 v;

	if (i >= it->n || it->count >= it->w->cfg->max_width)
		return 1;
	v = read_u64(it->array + i * it->stride);
	if (it->stride == 16 && (!v || read_u64(it->array + i * 16 + 8) == ~0ULL))
		return 0;	/* empty or dummy set slot */
	if (!put_u64(it->w->sc, it->len, v)) {
		it->full = true;
		return 1;
	}
	it->count++;
	if (it->depth + 1 <= it->w->cfg->max_depth)
		push(it->w->sc, v, it->depth + 1);
	return 0;
}

static __always_inline bool put_items(struct walk *w, __u32 *len, __u32 depth,
				      __u64 size, __u64 array, __u64 stride,
				      __u64 slots)
{
	struct items it = {
		.w = w, .len = len, .depth = depth, .array = array,
		.stride = stride,
	};

	if (!put_u64(w->sc, len, size))
		return false;
	it.n = slots < PYPROBE_WIDTH_MAX ? slots : PYPROBE_WIDTH_MAX;
	bpf_loop(PYPROBE_WIDTH_MAX, item_step, &it, 0);
	return !it.full;
}

/*
 * The first bytes of an object in one read: the type and the fields of the
 * simple kinds all lie there (each bpf_probe_read_user costs ~50 ns).
 */
#define HEAD_WORDS 8

struct head {
	__u64 w[HEAD_WORDS];
	bool ok;
};

static __always_inline __u64 head_word(const struct head *h, __u64 addr, __u64 off)
{
	if (h->ok && off < HEAD_WORDS * 8 && !(off & 7))
		return h->w[BOUNDED(off >> 3, HEAD_WORDS - 1)];
	return read_u64(addr + off);
}

/* A cached small int's value from its address alone. */
static __always_inline bool small_int_at(const struct pyprobe_layout *lay, __u64 addr,
					 __s64 *value)
{
	__u64 off = addr - lay->small_ints;

	if (!lay->small_ints || !lay->small_int_size || addr < lay->small_ints ||
	    off >= lay->small_int_size * PYPROBE_SMALL_INTS || off % lay->small_int_size)
		return false;
	*value = (__s64)(off / lay->small_int_size) + PYPROBE_SMALL_INT_MIN;
	return true;
}

/* What the object of a small int would have given: its size or tag word,
 * then its one digit. */
static __always_inline bool put_small_int(struct scratch *sc, __u32 *len,
					  const struct pyprobe_layout *lay, __s64 v)
{
	__u64 digit = v < 0 ? -v : v, tag;

	if (lay->attrs_mode == PYPROBE_ATTRS_311)	/* ob_size: -1, 0 or 1 */
		tag = (__u64)(__s64)((v > 0) - (v < 0));
	else						/* lv_tag: digits << 3 | sign */
		tag = v == 0 ? 1 : (1 << 3) | (v < 0 ? 2 : 0);
	return put_u64(sc, len, tag) && put_u64(sc, len, digit);
}

static long obj_step(__u32 i, void *arg)
{
	struct walk *w = arg;
	struct scratch *sc = w->sc;
	const struct pyprobe_layout *lay = w->lay;
	struct pyprobe_obj *obj;
	__u32 head = sc->head, off = sc->cap.data_len, len = 0, depth;
	__u64 addr, type, flags = 0, size;
	struct head h;
	__s64 small;
	__u16 kind;
	bool ok = true;

	if (head >= sc->tail)
		return 1;
	if (sc->cap.nobjs >= w->cfg->max_objs) {
		sc->cap.truncated |= PYPROBE_TRUNC_OBJS;
		return 1;
	}
	if (off > PYPROBE_DATA_MAX - sizeof(*obj) - 8) {
		sc->cap.truncated |= PYPROBE_TRUNC_DATA;
		return 1;
	}
	addr = sc->queue[BOUNDED(head, PYPROBE_MAX_OBJS - 1)].addr;
	depth = sc->queue[BOUNDED(head, PYPROBE_MAX_OBJS - 1)].depth;
	sc->head = head + 1;
	/* None, True, False and the small ints are known by address. */
	if (addr == lay->none_addr) {
		type = 0;
		kind = PYOBJ_NONE;
		goto record;
	}
	if (addr == lay->true_addr || addr == lay->false_addr) {
		type = lay->bool_type;
		kind = PYOBJ_BOOL;
		goto record;
	}
	if (small_int_at(lay, addr, &small)) {
		type = lay->long_type;
		kind = PYOBJ_INT;
		ok = put_small_int(sc, &len, lay, small);
		goto record;
	}
	/* Fails as a whole near the end of a mapping: then word by word. */
	h.ok = !bpf_probe_read_user(h.w, sizeof(h.w), (const void *)addr);
	type = head_word(&h, addr, lay->object_type);
	if (type == lay->long_type)
		flags = TPFLAGS_LONG;
	else if (type == lay->unicode_type)
		flags = TPFLAGS_UNICODE;

	if (!type) {
		kind = PYOBJ_UNREADABLE;
	} else if (type == lay->float_type) {
		kind = PYOBJ_FLOAT;
		ok = put_u64(sc, &len, head_word(&h, addr, lay->float_value));
	} else if (type == lay->set_type || type == lay->frozenset_type) {
		kind = PYOBJ_SET;
		ok = put_items(w, &len, depth, head_word(&h, addr, SET_USED),
			       head_word(&h, addr, SET_TABLE), 16,
			       head_word(&h, addr, SET_MASK) + 1);
	} else {
		if (!flags)
			flags = read_u64(type + lay->type_flags);
		if (flags & TPFLAGS_LONG) {
			__u64 tag = head_word(&h, addr, lay->long_tag);
			__s64 ndigits = lay->attrs_mode == PYPROBE_ATTRS_311 ?
					(__s64)tag : (__s64)(tag >> 3);

			if (ndigits < 0)
				ndigits = -ndigits;
			if (ndigits > INT_DIGITS_MAX)
				ndigits = INT_DIGITS_MAX;
			kind = PYOBJ_INT;
			ok = put_u64(sc, &len, tag);
			/* Up to two 30-bit digits (|v| < 2**60) are in the head. */
			if (ok && ndigits > 0 && ndigits <= 2 && h.ok &&
			    lay->long_digit + 8 <= HEAD_WORDS * 8 && !(lay->long_digit & 7))
				ok = put_u64(sc, &len, head_word(&h, addr, lay->long_digit));
			else if (ok)
				ok = put_bytes(sc, &len, addr + lay->long_digit,
					       (__u32)ndigits * 4);
		} else if (flags & TPFLAGS_UNICODE) {
			__u64 sw = head_word(&h, addr, lay->unicode_state & ~7ULL);
			__u32 state = (__u32)(sw >> ((lay->unicode_state & 7) * 8));
			__u64 length = head_word(&h, addr, lay->unicode_length);
			__u32 char_size = (state >> 2) & 7, n;
			__u64 data = addr + (((state >> 6) & 1) ?
				lay->unicode_ascii_size : lay->unicode_compact_size);

			kind = PYOBJ_STR;
			n = length * char_size < w->cfg->max_string * char_size ?
			    length * char_size : w->cfg->max_string * char_size;
			ok = put_u64(sc, &len, state) && put_u64(sc, &len, length) &&
			     (!((state >> 5) & 1) || put_bytes(sc, &len, data, n));
		} else if (flags & TPFLAGS_BYTES) {
			size = head_word(&h, addr, lay->varobject_size);
			kind = PYOBJ_BYTES;
			ok = put_u64(sc, &len, size) &&
			     put_bytes(sc, &len, addr + lay->bytes_sval,
				       size < w->cfg->max_string ? size : w->cfg->max_string);
		} else if (flags & TPFLAGS_LIST) {
			size = head_word(&h, addr, lay->varobject_size);
			kind = PYOBJ_LIST;
			ok = put_items(w, &len, depth, size,
				       head_word(&h, addr, lay->list_item), 8, size);
		} else if (flags & TPFLAGS_TUPLE) {
			size = head_word(&h, addr, lay->varobject_size);
			kind = PYOBJ_TUPLE;
			ok = put_items(w, &len, depth, size, addr + lay->tuple_item,
				       8, size);
		} else if (flags & TPFLAGS_DICT) {
			__u64 values = head_word(&h, addr, lay->dict_values);

			kind = PYOBJ_DICT;
			ok = put_pairs(w, &len, depth, head_word(&h, addr, lay->dict_keys),
				       values ? values + lay->dict_values_items : 0,
				       head_word(&h, addr, lay->dict_used));
		} else {
			kind = PYOBJ_OBJECT;
			if (depth < w->cfg->max_depth)
				put_attrs(w, &len, depth, addr, type, flags);
		}
	}
record:
	if (!ok)
		sc->cap.truncated |= PYPROBE_TRUNC_DATA;
	obj = (struct pyprobe_obj *)&sc->cap.data[BOUNDED(off, PYPROBE_DATA_MAX - 1)];
	obj->addr = addr;
	obj->type = type;
	obj->kind = kind;
	obj->depth = depth;
	obj->len = len;
	sc->cap.data_len = off + sizeof(*obj) + len;
	sc->cap.nobjs++;
	return 0;
}

/* --- the match --------------------------------------------------------- */

/* Generic cell rate algorithm: one timestamp, updated by compare-and-swap. */
static __always_inline bool rate_allows(struct pyprobe_stats *st,
					const struct pyprobe_config *cfg, __u64 now)
{
	__u64 tat, base;

	if (!cfg->rate_interval_ns)
		return true;
	for (int tries = 0; tries < 4; tries++) {
		tat = st->tat_ns;
		base = tat > now ? tat : now;
		if (base - now > cfg->rate_burst_ns)
			return false;
		if (__sync_val_compare_and_swap(&st->tat_ns, tat,
						base + cfg->rate_interval_ns) == tat)
			return true;
	}
	return false;
}

static __always_inline int capture(const struct pyprobe_layout *lay, __u64 frame,
				   __u64 code, __s64 line, __u32 event, __u64 value,
				   __u64 slot_hint, bool paired)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32, zero = 0;
	const struct pyprobe_config *cfg;
	struct pyprobe_stats *st;
	struct pyprobe_key key = {};
	struct inflight_key ik = {};
	struct scratch *sc;
	struct walk w;
	__u64 claimed, size, now;

	if (!frame)
		return 0;
	key.tgid = tgid;
	key.event = event;
	key.code = code;
	key.line = line;
	cfg = bpf_map_lookup_elem(&probes, &key);
	if (!cfg)
		return 0;
	st = bpf_map_lookup_elem(&stats, &cfg->slot);
	if (!st)
		return 0;
	if (slot_hint != ~0ULL && slot_hint != cfg->slot) {
		__sync_fetch_and_add(&st->drop_stale, 1);
		return 0;
	}
	ik.tgid = tgid;
	ik.slot = cfg->slot;
	ik.frame = frame;
	now = bpf_ktime_get_ns();
	if (event == PYPROBE_EV_RETURN || event == PYPROBE_EV_EXCEPTION) {
		/*
		 * Only the end of a call whose entry we captured. A paired end's
		 * entry reached us (the helper remembered it); if we dropped it,
		 * userspace drops the end it finds no entry for.
		 */
		if (!paired && bpf_map_delete_elem(&inflight, &ik))
			return 0;
		claimed = 0;
	} else {
		__sync_fetch_and_add(&st->hits, 1);
		if (cfg->max_hits && st->emitted >= cfg->max_hits) {
			__sync_fetch_and_add(&st->drop_max_hits, 1);
			return 0;
		}
		if (!rate_allows(st, cfg, now)) {
			__sync_fetch_and_add(&st->drop_rate, 1);
			return 0;
		}
		claimed = __sync_fetch_and_add(&st->emitted, 1);
		if (cfg->max_hits && claimed >= cfg->max_hits) {
			__sync_fetch_and_add(&st->drop_max_hits, 1);
			return 0;
		}
		if (event == PYPROBE_EV_ENTRY && cfg->pairs_return && !paired)
			bpf_map_update_elem(&inflight, &ik, &claimed, BPF_ANY);
	}

	sc = bpf_map_lookup_elem(&scratch_map, &zero);
	if (!sc)
		return 0;
	sc->cap.slot = cfg->slot;
	sc->cap.tgid = tgid;
	sc->cap.tid = (__u32)bpf_get_current_pid_tgid();
	sc->cap.event = event;
	sc->cap.line = line;
	sc->cap.ts_ns = now;
	sc->cap.frame = frame;
	sc->cap.code = key.code;
	sc->cap.value = value;
	sc->cap.hit = claimed + 1;
	sc->cap.nvars = 0;
	sc->cap.nframes = 0;
	sc->cap.nobjs = 0;
	sc->cap.data_len = 0;
	sc->cap.truncated = 0;
	sc->cap.generation = cfg->generation;
	sc->head = 0;
	sc->tail = 0;

	w.sc = sc;
	w.lay = lay;
	w.cfg = cfg;
	/* The value first: it gets the budget before the locals do. */
	if ((event == PYPROBE_EV_RETURN && (cfg->capture & PYPROBE_CAPTURE_RETURN)) ||
	    event == PYPROBE_EV_EXCEPTION)
		push(sc, value, 0);
	if (event == PYPROBE_EV_EXCEPTION && value)
		push(sc, read_u64(value + lay->exc_args), 1);
	/* The end of a call carries only its value: the arguments came with
	 * the entry, and capturing them twice doubles the cost per call. */
	if ((cfg->capture & (PYPROBE_CAPTURE_ARGS | PYPROBE_CAPTURE_LOCALS)) &&
	    event != PYPROBE_EV_RETURN && event != PYPROBE_EV_EXCEPTION) {
		w.frame = frame;
		read_vars(&w);
	}
	/* An exception always carries where it was raised; a return needs no
	 * stack (the entry's is the snapshot's). */
	if (((cfg->capture & PYPROBE_CAPTURE_STACK) && event != PYPROBE_EV_RETURN) ||
	    event == PYPROBE_EV_EXCEPTION) {
		w.frame = frame;
		bpf_loop(PYPROBE_MAX_FRAMES, frame_step, &w, 0);
	}
	bpf_loop(PYPROBE_MAX_OBJS, obj_step, &w, 0);

	size = sc->cap.data_len;
	if (size > PYPROBE_DATA_MAX)
		size = PYPROBE_DATA_MAX;
	size += offsetof(struct pyprobe_event, data);
	/* Keep the compiler from handing the verifier an unchecked copy. */
	asm volatile("" : "+r"(size));
	if (size > sizeof(sc->cap))
		return 0;
	if (bpf_ringbuf_output(&events, &sc->cap, size, 0))
		__sync_fetch_and_add(&st->drop_ringbuf, 1);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(pydi_hook, __u64 code_or_tstate, __u64 slot, __s64 line, __s64 event,
	       __u64 value)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	const struct pyprobe_layout *lay = bpf_map_lookup_elem(&layouts, &tgid);
	__u64 frame = PT_REGS_PARM6_FRAME(ctx), code = code_or_tstate;

	if (!lay)
		return 0;
	if (!frame) {	/* the helper has no frame offsets */
		frame = current_frame(lay, code_or_tstate);
		code = frame ? frame_code(lay, frame) : 0;
	}
	return capture(lay, frame, code, line, (__u32)event & ~PYPROBE_EV_PAIRED, value,
		       slot, event & PYPROBE_EV_PAIRED);
}

/* --no-inject: every frame entered from C, matched by code pointer. */
SEC("uprobe")
int BPF_KPROBE(pydi_eval_frame, __u64 tstate, __u64 frame)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	const struct pyprobe_layout *lay = bpf_map_lookup_elem(&layouts, &tgid);

	if (!lay)
		return 0;
	return capture(lay, frame, frame ? frame_code(lay, frame) : 0, 0, PYPROBE_EV_ENTRY,
		       0, ~0ULL, false);
}

char LICENSE[] SEC("license") = "GPL";
