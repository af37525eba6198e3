// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "clock.h"
#include "pyobj.h"
#include "pyrepr.h"
#include "snapshot.h"

#define CO_VARARGS	0x04
#define CO_VARKEYWORDS	0x08
#define SEEN_MAX	PYPROBE_MAX_OBJS

/* The objects of one capture, indexed by address. */
struct objects {
	const struct pyprobe_capture *cap;
	/* Copies: an object follows a payload of any length, so headers in
	 * the capture are not aligned. */
	struct pyprobe_obj obj[PYPROBE_MAX_OBJS];
	const uint8_t *payload[PYPROBE_MAX_OBJS];
	size_t count;
	uint64_t seen[SEEN_MAX];	/* the path being decoded: cycles */
	size_t nseen;
};

struct decode {
	struct snapshot_target *t;
	const struct snapshot_probe *p;
	struct objects *objs;
};

void snapshot_target_init(struct snapshot_target *t, struct pyproc *pp,
			  uint64_t true_addr)
{
	memset(t, 0, sizeof(*t));
	t->pp = pp;
	t->true_addr = true_addr;
	code_cache_init(&t->codes, &pp->reader, &pp->offsets);
}

void snapshot_target_free(struct snapshot_target *t)
{
	code_cache_clear(&t->codes);
}

static void index_objects(struct objects *o, const struct pyprobe_capture *cap,
			  size_t size)
{
	size_t off = 0, data_len = cap->data_len;
	size_t avail = size - offsetof(struct pyprobe_capture, data);

	memset(o, 0, sizeof(*o));
	o->cap = cap;
	if (data_len > avail)
		data_len = avail;
	while (o->count < PYPROBE_MAX_OBJS && off + sizeof(struct pyprobe_obj) <= data_len) {
		struct pyprobe_obj *obj = &o->obj[o->count];

		memcpy(obj, cap->data + off, sizeof(*obj));
		if (obj->len > data_len - off - sizeof(*obj))
			break;
		o->payload[o->count] = cap->data + off + sizeof(*obj);
		o->count++;
		off += sizeof(*obj) + obj->len;
	}
}

static int find_object(const struct objects *o, uint64_t addr)
{
	for (size_t i = 0; i < o->count; i++)
		if (o->obj[i].addr == addr)
			return (int)i;
	return -1;
}

static const char *type_name(struct snapshot_target *t, uint64_t type)
{
	size_t i = (type >> 4) % TYPE_CACHE_SLOTS;
	uint64_t name_ptr;

	if (t->types[i].type == type && type)
		return t->types[i].name;
	t->types[i].type = type;
	snprintf(t->types[i].name, sizeof(t->types[i].name), "object");
	if (mem_read_u64(&t->pp->reader, type + t->pp->offsets.type_name, &name_ptr))
		return t->types[i].name;
	for (size_t c = 0; c + 1 < sizeof(t->types[i].name); c++) {
		char ch;

		if (mem_read(&t->pp->reader, name_ptr + c, &ch, 1) || !ch) {
			t->types[i].name[c] = '\0';
			break;
		}
		t->types[i].name[c] = ch;
		t->types[i].name[c + 1] = '\0';
	}
	return t->types[i].name;
}

static uint64_t word(const uint8_t *payload, size_t i)
{
	uint64_t v;

	memcpy(&v, payload + 8 * i, 8);
	return v;
}

static json_t *not_captured(const char *type, const char *reason)
{
	return json_pack("{s:s,s:s}", "type", type, "not_captured_reason", reason);
}

static json_t *decode_value(struct decode *d, uint64_t addr, unsigned int depth);
static const char *type_name(struct snapshot_target *t, uint64_t type);
static int find_object(const struct objects *o, uint64_t addr);

/* A value whose name is sensitive: its type, never its contents. */
static json_t *redacted(struct decode *d, uint64_t addr)
{
	int i = find_object(d->objs, addr);

	/* BPF knows None by address and leaves its type out. */
	if (i >= 0 && d->objs->obj[i].kind == PYOBJ_NONE)
		return not_captured("NoneType", "redacted");
	return not_captured(i >= 0 ? type_name(d->t, d->objs->obj[i].type) : "object",
			    "redacted");
}

/* The text of a captured str: UTF-8 of its captured prefix. */
static char *str_text(const struct pyprobe_obj *obj, const uint8_t *payload,
		      uint64_t *length_out)
{
	uint32_t state = (uint32_t)word(payload, 0);
	uint64_t length = word(payload, 1);
	unsigned int kind = (state >> 2) & 7;
	size_t have = obj->len > 16 ? obj->len - 16 : 0, n;
	const uint8_t *data = payload + 16;

	*length_out = length;
	if (kind != 1 && kind != 2 && kind != 4)
		return NULL;
	n = have / kind;
	if (n > length)
		n = length;
	return ucs_to_utf8(data, n, kind);
}

static json_t *decode_str(struct decode *d, const struct pyprobe_obj *obj,
			  const uint8_t *payload)
{
	uint64_t length;
	char *text = str_text(obj, payload, &length);
	json_t *v;

	if (!text)
		return not_captured("str", "unreadable");
	/* Truncate on code points, as Python's slicing does. */
	{
		size_t chars = 0, i = 0;

		for (; text[i]; i++) {
			if (((unsigned char)text[i] & 0xc0) != 0x80) {
				if (chars == d->p->limits.max_string)
					break;
				chars++;
			}
		}
		text[i] = '\0';
	}
	v = json_pack("{s:s,s:s}", "type", "str", "value", text);
	if (length > d->p->limits.max_string) {
		json_object_set_new(v, "truncated", json_true());
		json_object_set_new(v, "size", json_integer((json_int_t)length));
	}
	free(text);
	return v;
}

static json_t *decode_int(const struct decode *d, const uint8_t *payload,
			  const struct pyprobe_obj *obj)
{
	uint64_t tag = word(payload, 0);
	uint32_t digits[8] = { 0 };
	size_t ndigits, have = obj->len > 8 ? (obj->len - 8) / 4 : 0;
	bool negative;
	char buf[96];

	if (d->t->pp->offsets.long_is_tagged) {
		ndigits = tag >> 3;
		negative = (tag & 3) == 2;
	} else {
		int64_t size = (int64_t)tag;

		negative = size < 0;
		/* in unsigned: a hostile INT64_MIN has no signed negation */
		ndigits = size < 0 ? (size_t)0 - (size_t)size : (size_t)size;
	}
	if (ndigits > have || ndigits > 8)
		return not_captured("int", "too_large");
	memcpy(digits, payload + 8, ndigits * 4);
	if (py_long_repr(digits, ndigits, negative, buf, sizeof(buf)) < 0)
		return not_captured("int", "too_large");
	return json_pack("{s:s,s:s}", "type", "int", "value", buf);
}

static bool on_path(struct objects *o, uint64_t addr)
{
	for (size_t i = 0; i < o->nseen; i++)
		if (o->seen[i] == addr)
			return true;
	return false;
}

static json_t *decode_items(struct decode *d, const char *type,
			    const uint8_t *payload, const struct pyprobe_obj *obj,
			    unsigned int depth)
{
	uint64_t size = word(payload, 0);
	size_t n = obj->len / 8 - 1;
	json_t *elements = json_array();
	json_t *v;

	for (size_t i = 0; i < n && i < d->p->limits.max_width; i++)
		json_array_append_new(elements,
				      decode_value(d, word(payload, 1 + i), depth + 1));
	v = json_pack("{s:s,s:o}", "type", type, "elements", elements);
	if (size > d->p->limits.max_width || size > n) {
		json_object_set_new(v, "truncated", json_true());
		json_object_set_new(v, "size", json_integer((json_int_t)size));
	}
	return v;
}

/* The text of a captured str key, for redaction and field names. */
static char *key_text(struct decode *d, uint64_t addr)
{
	int i = find_object(d->objs, addr);
	uint64_t length;

	if (i < 0 || d->objs->obj[i].kind != PYOBJ_STR)
		return NULL;
	return str_text(&d->objs->obj[i], d->objs->payload[i], &length);
}

static json_t *decode_pairs(struct decode *d, const char *type,
			    const uint8_t *payload, const struct pyprobe_obj *obj,
			    unsigned int depth, bool as_fields)
{
	uint64_t used = word(payload, 0);
	size_t n = (obj->len / 8 - 1) / 2;
	unsigned int limit = as_fields ? d->p->limits.max_fields : d->p->limits.max_width;
	json_t *container = as_fields ? json_object() : json_array();
	json_t *v;

	for (size_t i = 0; i < n && i < limit; i++) {
		uint64_t key = word(payload, 1 + 2 * i), value = word(payload, 2 + 2 * i);
		char *name = key_text(d, key);
		json_t *val;

		if (name && redact_name(d->p->redactor, name))
			val = redacted(d, value);
		else
			val = decode_value(d, value, depth + 1);
		if (as_fields) {
			char unnamed[32];

			/* A name that did not fit the budget: keep the field apart. */
			snprintf(unnamed, sizeof(unnamed), "<field %zu>", i);
			json_object_set_new(container, name ? name : unnamed, val);
		} else {
			json_array_append_new(container, json_pack("{s:o,s:o}", "key",
					      decode_value(d, key, depth + 1), "value", val));
		}
		free(name);
	}
	if (as_fields) {
		v = json_pack("{s:s,s:o}", "type", type, "fields", container);
		if (used > limit) {
			json_object_set_new(v, "not_captured_reason", json_string("fieldCount"));
			json_object_set_new(v, "size", json_integer((json_int_t)used));
		}
	} else {
		v = json_pack("{s:s,s:o}", "type", type, "entries", container);
		if (used > limit || used > n) {
			json_object_set_new(v, "truncated", json_true());
			json_object_set_new(v, "size", json_integer((json_int_t)used));
		}
	}
	return v;
}

static json_t *decode_value(struct decode *d, uint64_t addr, unsigned int depth)
{
	struct objects *o = d->objs;
	const struct pyprobe_obj *obj;
	const uint8_t *payload;
	const char *tname;
	char tname_buf[sizeof(d->t->types[0].name)];
	json_t *v = NULL;
	char buf[PYPROBE_STR_MAX * 4 + 8];
	int i;

	if (!addr)
		return json_pack("{s:s,s:b}", "type", "NoneType", "is_null", 1);
	i = find_object(o, addr);
	if (i < 0)
		return not_captured("object", o->cap->truncated ? "capture_budget" : "depth");
	obj = &o->obj[i];
	payload = o->payload[i];
	/* A copy: decoding what this object holds reuses the type cache. */
	snprintf(tname_buf, sizeof(tname_buf), "%s",
		 obj->kind == PYOBJ_NONE ? "NoneType" : type_name(d->t, obj->type));
	tname = tname_buf;
	if (redact_type(d->p->redactor, tname))
		return not_captured(tname, "redacted");

	switch (obj->kind) {
	case PYOBJ_NONE:
		return json_pack("{s:s,s:b}", "type", "NoneType", "is_null", 1);
	case PYOBJ_BOOL:
		return json_pack("{s:s,s:s}", "type", "bool", "value",
				 addr == d->t->true_addr ? "true" : "false");
	case PYOBJ_INT:
		if (obj->len < 8)
			return not_captured(tname, "capture_budget");
		v = decode_int(d, payload, obj);
		json_object_set_new(v, "type", json_string(tname));
		return v;
	case PYOBJ_FLOAT:
		if (obj->len < 8)
			return not_captured(tname, "capture_budget");
		{
			double f;

			memcpy(&f, payload, 8);
			py_float_repr(f, buf, sizeof(buf));
		}
		return json_pack("{s:s,s:s}", "type", tname, "value", buf);
	case PYOBJ_STR:
		if (obj->len < 16)
			return not_captured(tname, "capture_budget");
		v = decode_str(d, obj, payload);
		json_object_set_new(v, "type", json_string(tname));
		return v;
	case PYOBJ_BYTES: {
		uint64_t size;
		size_t have;
		bool whole;

		/* The byte budget can run out before the size word. */
		if (obj->len < 8)
			return not_captured(tname, "capture_budget");
		size = word(payload, 0);
		have = obj->len - 8;
		if (have > size)
			have = size;
		whole = py_bytes_repr(payload + 8, have, buf,
				      d->p->limits.max_string + 1 < sizeof(buf) ?
				      d->p->limits.max_string + 1 : sizeof(buf));
		v = json_pack("{s:s,s:s}", "type", tname, "value", buf);
		if (!whole || size > have) {
			json_object_set_new(v, "truncated", json_true());
			json_object_set_new(v, "size", json_integer((json_int_t)size));
		}
		return v;
	}
	default:
		break;
	}

	/* Compound values: depth and cycles, as ADOT's serializer counts them. */
	if (depth >= d->p->limits.max_depth || on_path(o, addr))
		return not_captured(tname, "depth");
	if (o->nseen < SEEN_MAX)
		o->seen[o->nseen++] = addr;
	switch (obj->kind) {
	case PYOBJ_LIST:
	case PYOBJ_TUPLE:
	case PYOBJ_SET:
		v = obj->len >= 8 ? decode_items(d, tname, payload, obj, depth) :
				    not_captured(tname, "capture_budget");
		break;
	case PYOBJ_DICT:
		v = obj->len >= 8 ? decode_pairs(d, tname, payload, obj, depth, false) :
				    not_captured(tname, "capture_budget");
		break;
	case PYOBJ_OBJECT:
		if (obj->len >= 8) {
			v = decode_pairs(d, tname, payload, obj, depth, true);
		} else {
			/* No attributes to show: the default repr. */
			snprintf(buf, sizeof(buf), "<%s object at 0x%" PRIx64 ">", tname, addr);
			v = json_pack("{s:s,s:s}", "type", tname, "value", buf);
		}
		break;
	default:
		v = not_captured(tname, "unreadable");
	}
	o->nseen--;
	return v;
}

static bool wanted(const json_t *filter, const char *name)
{
	size_t i;
	json_t *n;

	if (!filter || json_array_size(filter) == 0)
		return true;
	json_array_foreach(filter, i, n)
		if (json_is_string(n) && strcmp(json_string_value(n), name) == 0)
			return true;
	return false;
}

/* Variables of the frame: the arguments, or every bound local. */
static json_t *decode_vars(struct decode *d, const struct pycode_info *ci,
			   bool args_only, const json_t *filter)
{
	const struct pyprobe_capture *cap = d->objs->cap;
	size_t nargs = (size_t)ci->argcount + (size_t)ci->kwonlyargcount +
		       ((ci->flags & CO_VARARGS) ? 1 : 0) +
		       ((ci->flags & CO_VARKEYWORDS) ? 1 : 0);
	size_t n = args_only ? nargs : ci->nlocalsplus;
	json_t *vars = json_object();

	for (size_t i = 0; i < n && i < cap->nvars && i < ci->nlocalsplus; i++) {
		const char *name = ci->localsplus_names[i];
		uint64_t v = cap->vars[i];
		json_t *val;

		if (!v || !wanted(filter, name))
			continue;	/* unbound, or not asked for */
		if (redact_name(d->p->redactor, name))
			val = redacted(d, v);
		else
			val = decode_value(d, v, 0);
		json_object_set_new(vars, name, val);
	}
	return vars;
}

static json_t *decode_stack(struct snapshot_target *t,
			    const struct pyprobe_capture *cap, unsigned int max)
{
	json_t *stack = json_array();

	for (uint32_t i = 0; i < cap->nframes && i < PYPROBE_MAX_FRAMES && i < max; i++) {
		const struct pycode_info *ci = code_cache_get(&t->codes, cap->frames[i].code);
		uint64_t base;
		int line = 0;

		if (!ci) {
			json_array_append_new(stack, json_pack("{s:s,s:s,s:i}", "function",
					      "<unknown>", "file_path", "", "line_number", 0));
			continue;
		}
		base = cap->frames[i].code + t->pp->offsets.code_code_adaptive;
		if (cap->frames[i].instr_ptr >= base)
			line = pycode_line_at(ci, cap->frames[i].instr_ptr - base);
		else
			line = ci->first_line;	/* not started yet */
		json_array_append_new(stack, json_pack("{s:s,s:s,s:i}", "function",
				      ci->qualname, "file_path", ci->filename,
				      "line_number", line < 0 ? 0 : line));
	}
	return stack;
}

static json_t *decode_throwable(struct decode *d, uint64_t exc, json_t *stack)
{
	const struct objects *o = d->objs;
	int i = find_object(o, exc), ai;
	const char *tname = i >= 0 ? type_name(d->t, o->obj[i].type) : "BaseException";
	char *message = NULL;

	/*
	 * The message is args[0] when it is a str, as str(exc) shows it. The
	 * exception is usually gone (caught, freed, reused) by the time we
	 * decode, so args comes from the capture, not from target memory: BPF
	 * queues the exception first and its args tuple second, at depth 1,
	 * before anything else at that depth.
	 */
	ai = 1;
	if (i == 0 && o->count > 1 && o->obj[ai].kind == PYOBJ_TUPLE &&
	    o->obj[ai].depth == 1 && o->obj[ai].len >= 16)
		message = key_text((struct decode *)d, word(o->payload[ai], 1));
	json_t *t = json_pack("{s:s,s:s,s:o}", "type", tname, "message",
			      message ? message : "", "stacktrace", stack);

	free(message);
	return t;
}

#define UUID_POOL_BYTES 4096

/* Random bytes for snapshot ids, a page per getrandom(2), not one call each. */
static void random_bytes(uint8_t *out, size_t n)
{
	static __thread uint8_t pool[UUID_POOL_BYTES];
	static __thread size_t left;

	if (left < n) {
		if (getrandom(pool, sizeof(pool), 0) != (ssize_t)sizeof(pool)) {
			memset(out, 0, n);
			return;
		}
		left = sizeof(pool);
	}
	memcpy(out, pool + sizeof(pool) - left, n);
	left -= n;
}

/* A random (version 4) UUID in its 36-character form; len >= 37. */
static void uuid4(char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t b[16];
	size_t o = 0;

	if (len < 37) {
		buf[0] = '\0';
		return;
	}
	random_bytes(b, sizeof(b));
	b[6] = (b[6] & 0x0f) | 0x40;
	b[8] = (b[8] & 0x3f) | 0x80;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			buf[o++] = '-';
		buf[o++] = hex[b[i] >> 4];
		buf[o++] = hex[b[i] & 0xf];
	}
	buf[o] = '\0';
}

/* Wall-clock milliseconds of a CLOCK_MONOTONIC nanosecond stamp. */
static int64_t wall_ms(uint64_t mono_ns)
{
	struct timespec real, mono;
	int64_t offset;

	clock_gettime(CLOCK_REALTIME, &real);
	clock_gettime(CLOCK_MONOTONIC, &mono);
	offset = (int64_t)(real.tv_sec - mono.tv_sec) * 1000000000LL +
		 (real.tv_nsec - mono.tv_nsec);
	/* Unsigned: wraps instead of overflowing on a nonsense stamp. */
	return (int64_t)((mono_ns + (uint64_t)offset) / 1000000);
}

#define THREAD_NAME_TTL_NS 1000000000ull

static void read_thread_name(pid_t pid, uint32_t tid, char *name, size_t size)
{
	char path[64];
	FILE *f;

	name[0] = '\0';
	snprintf(path, sizeof(path), "/proc/%d/task/%u/comm", pid, tid);
	f = fopen(path, "re");
	if (f) {
		if (fgets(name, (int)size, f))
			name[strcspn(name, "\n")] = '\0';
		fclose(f);
	}
}

/*
 * Opening /proc/PID/task/TID/comm per snapshot was a sixth of a saturated
 * pipeline's time: names are read at most once a second per thread.
 */
static json_t *thread_info(struct snapshot_target *t, uint32_t tid)
{
	struct thread_name *slot = &t->threads[tid % THREAD_CACHE_SLOTS];
	uint64_t now = monotonic_ns();

	if (slot->tid != tid || now - slot->read_ns > THREAD_NAME_TTL_NS) {
		read_thread_name(t->pp->pid, tid, slot->name, sizeof(slot->name));
		slot->tid = tid;
		slot->read_ns = now;
	}
	return json_pack("{s:i,s:s}", "id", (int)tid, "name", slot->name);
}

static json_t *location(const struct snapshot_probe *p)
{
	const char *dot = p->qualname ? strrchr(p->qualname, '.') : NULL;
	char class_name[512];
	json_t *loc;

	/* ADOT: class_name is the module, plus the class for methods. */
	if (dot && !strstr(p->qualname, "<locals>"))
		snprintf(class_name, sizeof(class_name), "%s.%.*s", p->module ? p->module : "",
			 (int)(dot - p->qualname), p->qualname);
	else
		snprintf(class_name, sizeof(class_name), "%s", p->module ? p->module : "");
	loc = json_pack("{s:s,s:s,s:s,s:i,s:s}", "code_unit", p->module ? p->module : "",
			"class_name", class_name, "method_name",
			dot ? dot + 1 : (p->qualname ? p->qualname : ""), "line_number",
			p->line, "language", "python");
	if (p->file_path)
		json_object_set_new(loc, "file_path", json_string(p->file_path));
	return loc;
}

json_t *snapshot_build(struct snapshot_target *t, const struct snapshot_probe *p,
		       const struct pyprobe_capture *first, size_t first_size,
		       const struct pyprobe_capture *ret, size_t ret_size)
{
	struct objects *objs = malloc(sizeof(*objs));
	const struct pycode_info *ci;
	struct decode d = { .t = t, .p = p, .objs = objs };
	json_t *snap, *captures = json_object(), *stack = NULL;
	char id[40];

	if (!objs)
		return NULL;
	uuid4(id, sizeof(id));
	ci = code_cache_get(&t->codes, first->code);
	snap = json_pack("{s:s,s:I}", "id", id, "timestamp", (json_int_t)wall_ms(first->ts_ns));
	if (ret)
		json_object_set_new(snap, "duration",
				    json_integer(ret->ts_ns > first->ts_ns ?
						 (json_int_t)((ret->ts_ns - first->ts_ns) / 1000000) : 0));
	if (t->pp->identity.service_name[0])
		json_object_set_new(snap, "service", json_string(t->pp->identity.service_name));
	if (t->pp->identity.environment[0])
		json_object_set_new(snap, "environment", json_string(t->pp->identity.environment));
	if (p->location_hash)
		json_object_set_new(snap, "location_hash", json_string(p->location_hash));
	json_object_set_new(snap, "instrumentation", json_pack("{s:o}", "location", location(p)));
	json_object_set_new(snap, "thread", thread_info(t, first->tid));

	index_objects(objs, first, first_size);
	if (p->capture_stack)
		stack = decode_stack(t, first, p->limits.max_frames);
	if (p->line) {
		json_t *ctx = json_object(), *lines = json_object();
		char key[16];

		if (ci && p->capture_locals)
			json_object_set_new(ctx, "locals", decode_vars(&d, ci, false,
							 p->locals_filter));
		snprintf(key, sizeof(key), "%d", p->line);
		json_object_set_new(lines, key, ctx);
		json_object_set_new(captures, "lines", lines);
	} else {
		json_t *entry = json_object();

		if (ci && p->capture_args)
			json_object_set_new(entry, "arguments",
					    decode_vars(&d, ci, true, p->args_filter));
		json_object_set_new(captures, "entry", entry);
		if (ret) {
			json_t *rctx = json_object();

			index_objects(objs, ret, ret_size);
			if (ret->event == PYPROBE_EV_EXCEPTION)
				json_object_set_new(rctx, "throwable",
						    decode_throwable(&d, ret->value,
								     decode_stack(t, ret, p->limits.max_frames)));
			else if (p->capture_return)
				json_object_set_new(rctx, "return_value",
						    decode_value(&d, ret->value, 0));
			json_object_set_new(captures, "return", rctx);
		}
	}
	if (stack && p->capture_stack)
		json_object_set_new(snap, "stack", stack);
	else
		json_decref(stack);
	json_object_set_new(snap, "captures", captures);
	json_object_set_new(snap, "instrumentation_type",
			    json_string(p->instrumentation_type ? p->instrumentation_type : "BREAKPOINT"));
	if (first->truncated || (ret && ret->truncated))
		json_object_set_new(snap, "truncated", json_true());
	free(objs);
	return snap;
}
