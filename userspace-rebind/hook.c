/* SPDX-License-Identifier: MIT */
/*
 * Hooked code calls in here; this decides, per probe slot, whether the call
 * reaches pydi_hook_event (where BPF's uprobe sits) or stops at the gate.
 *
 * 3.11: the bootstrap inserts `_hook(slot, event, line[, value])` into a
 *       copy of the code (bytecode rewrite); the call carries everything.
 * 3.12+: sys.monitoring calls _mon_start/_mon_return/_mon_unwind/_mon_line
 *       with the code object; a small open-addressing table keyed by the
 *       code pointer (filled by _monitor_add/_monitor_remove) says which
 *       slots want it, so no Python dict or code hashing runs per event.
 *
 * Both run with the GIL held, from a builtin call that pushed no frame of
 * its own, so PyThreadState_Get()'s current frame is the probed frame.
 * The table is only changed by commands, also under the GIL.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hook.h"

/* Exception types whose passage is not an "exception" event (GeneratorExit
 * closing a generator, asyncio.CancelledError cancelling a task). */
#define MAX_SKIP_TYPES 8

/* A probe's interest in a code object (3.12+ table). */
struct hook_point {
	PyObject *code;		/* strong reference */
	int64_t line;		/* PYDI_EV_LINE: the line; else 0 */
	uint32_t slot;
	int32_t event;		/* enum pydi_hook_event */
};

/* Index of the points (sorted by code) by code pointer. */
struct code_bucket {
	PyObject *code;		/* NULL: empty bucket */
	uint32_t first;
	uint32_t count;
};

static struct pydi_gate gates[PYDI_MAX_GATES] __attribute__((aligned(64)));
static struct pydi_ends ends __attribute__((aligned(64)));

static struct hook_point *points;
static size_t npoints, points_cap;
static struct code_bucket *buckets;	/* NULL while there are no points */
static size_t bucket_mask;
static uint64_t table_generation;

static PyObject *monitoring_disable;	/* sys.monitoring.DISABLE */
static PyTypeObject *skip_types[MAX_SKIP_TYPES];
static int nskip_types;

/* Test only: calls that passed the gate, and the record list (NULL: off). */
static uint64_t trap_count;
/* sys.monitoring callbacks run (a test shows DISABLE quiets unwanted lines). */
static uint64_t callback_count;
static PyObject *record_list;

/* (slot, event, line, value, code of the current frame, thread id): what
 * BPF would see, so tests can hold the hook to it. Test mode only. */
static void
record_hit(uint64_t slot, int64_t event, int64_t line, PyObject *value)
{
	PyFrameObject *frame = PyEval_GetFrame();	/* borrowed */
	PyObject *code = NULL, *item;

	if (frame != NULL) {
		code = (PyObject *)PyFrame_GetCode(frame);
	}
	item = Py_BuildValue("(KLLOOk)", (unsigned long long)slot,
			     (long long)event, (long long)line,
			     value ? value : Py_None, code ? code : Py_None,
			     PyThread_get_thread_ident());
	Py_XDECREF(code);
	if (item == NULL || PyList_Append(record_list, item) < 0) {
		PyErr_Clear();
	}
	Py_XDECREF(item);
}

/*
 * Calls the hook let through, per slot, by frame address: the end of a call
 * traps only if its start did (BPF captured, or at least saw, the start),
 * so a rate-limited call pays no trap at either end. All of this runs under
 * the GIL, which serializes it. A full set makes the slot trap every call
 * end from then on: slower, never wrong.
 */
#define TRAPPED_PER_SLOT 8

static uint64_t trapped[PYDI_MAX_GATES][TRAPPED_PER_SLOT];
static uint8_t trapped_overflow[PYDI_MAX_GATES];

static uint64_t
current_frame(void)
{
	const struct pydi_helper_state *st = &pydi_helper_state;
	uintptr_t tstate = (uintptr_t)PyThreadState_Get();
	uintptr_t cframe;

	if (!st->frame_known) {
		return 0;
	}
	if (st->tstate_cframe != UINT64_MAX) {
		cframe = *(uintptr_t *)(tstate + st->tstate_cframe);
		return cframe ? *(uint64_t *)(cframe + st->cframe_current_frame) : 0;
	}
	return *(uint64_t *)(tstate + st->tstate_current_frame);
}

/* 1 if remembered; 0 when the slot's table is full. */
static int
remember_call(uint64_t slot, uint64_t frame)
{
	for (int i = 0; i < TRAPPED_PER_SLOT; i++) {
		if (trapped[slot][i] == 0 || trapped[slot][i] == frame) {
			trapped[slot][i] = frame;
			return 1;
		}
	}
	trapped_overflow[slot] = 1;
	return 0;
}

/* Was this call's start let through? Forgets it either way. */
static int
forget_call(uint64_t slot, uint64_t frame)
{
	for (int i = 0; i < TRAPPED_PER_SLOT; i++) {
		if (trapped[slot][i] == frame) {
			trapped[slot][i] = 0;
			return 1;
		}
	}
	return 0;
}

/* A call's end, told to the agent without a trap (the GIL serializes us). */
static void
tell_end(uint64_t slot, uint64_t frame)
{
	uint64_t head = ends.head;
	struct pydi_end *e = &ends.rec[head & (PYDI_ENDS_MAX - 1)];

	e->frame = frame;
	e->ts_ns = now_ns();
	e->slot = (uint32_t)slot;
	__atomic_store_n(&ends.head, head + 1, __ATOMIC_RELEASE);
}

/*
 * An armed gate: the rate limit, pairing, the trap. Out of line, so that a
 * hit on a disarmed gate (a stale hook) pays none of its register saves.
 */
static void __attribute__((noinline))
hook_armed(struct pydi_gate *gate, uint64_t slot, int64_t event, int64_t line,
	   PyObject *value)
{
	uint64_t next_allowed, frame = 0;
	int64_t paired = 0;
	int limited;

	next_allowed = __atomic_load_n(&gate->next_allowed_ns, __ATOMIC_RELAXED);
	limited = next_allowed != 0 && now_ns() < next_allowed;
	if (event == PYDI_EV_ENTRY || event == PYDI_EV_LINE) {
		if (limited) {
			gate->skipped++;
			return;
		}
		if (event == PYDI_EV_ENTRY && (frame = current_frame()) != 0
		    && remember_call(slot, frame)) {
			paired = PYDI_EV_PAIRED;
		}
	}
	else {
		/*
		 * The end of a call must reach BPF whenever its start did (the
		 * snapshot needs its return value), whatever the gate says by
		 * now. Without frame offsets every call end traps; BPF drops the
		 * ones whose start it did not capture.
		 */
		frame = current_frame();
		if (frame != 0 && forget_call(slot, frame)) {
			if (event == PYDI_EV_RETURN &&
			    (__atomic_load_n(&gate->flags, __ATOMIC_RELAXED) &
			     PYDI_GATE_END_IN_RING)) {
				tell_end(slot, frame);
				return;
			}
			paired = PYDI_EV_PAIRED;
		}
		else if (limited && frame != 0 && !trapped_overflow[slot]) {
			return;
		}
	}
	trap_count++;
	if (record_list != NULL) {
		record_hit(slot, event, line, value);
	}
	if (frame == 0) {
		frame = current_frame();
	}
	if (frame == 0) {
		pydi_hook_event((uintptr_t)PyThreadState_Get(), slot, line,
				event | paired, value, 0);
		return;
	}
	pydi_hook_event(*(uint64_t *)(frame + pydi_helper_state.frame_code) &
			pydi_helper_state.code_mask, slot, line, event | paired,
			value, frame);
}

/* The hot path: count, check the gate, trap. */
static inline void
hook_hit(uint64_t slot, int64_t event, int64_t line, PyObject *value)
{
	struct pydi_gate *gate;

	if (slot >= PYDI_MAX_GATES) {
		return;
	}
	gate = &gates[slot];
	/* Calls and line hits: a call's end is part of the same hit. */
	if (event == PYDI_EV_ENTRY || event == PYDI_EV_LINE) {
		gate->hits++;
	}
	/* The agent writes these from outside (process_vm_writev). */
	if (__atomic_load_n(&gate->armed, __ATOMIC_RELAXED)) {
		hook_armed(gate, slot, event, line, value);
	}
}

static int
exception_skipped(PyObject *exc)
{
	int i;

	if (exc == NULL) {
		return 0;
	}
	for (i = 0; i < nskip_types; i++) {
		if (PyType_IsSubtype(Py_TYPE(exc), skip_types[i])) {
			return 1;
		}
	}
	return 0;
}

/* An int argument of a hook call; -1 (and no exception left) if it is not
 * one: a hook never raises into the application. */
static long long
int_arg(PyObject *arg)
{
	long long value = PyLong_AsLongLong(arg);

	if (value == -1 && PyErr_Occurred()) {
		PyErr_Clear();
	}
	return value;
}

/* _hook(slot, event, line[, value]): what 3.11 hooked bytecode calls. */
static PyObject *
hook_call(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	long long slot, event, line;
	PyObject *value = NULL;

	(void)self;
	if (nargs < 3 || nargs > 4) {
		Py_RETURN_NONE;
	}
	slot = int_arg(args[0]);
	event = int_arg(args[1]);
	line = int_arg(args[2]);
	if (nargs == 4) {
		value = args[3];
	}
	if (slot < 0 || (event == PYDI_EV_EXCEPTION && exception_skipped(value))) {
		Py_RETURN_NONE;
	}
	hook_hit((uint64_t)slot, event, line, value);
	Py_RETURN_NONE;
}

/* -- 3.12+: the code table and the sys.monitoring callbacks -- */

static size_t
hash_ptr(const void *ptr)
{
	uint64_t x = (uint64_t)(uintptr_t)ptr;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	return (size_t)x;
}

static const struct code_bucket *
find_code(PyObject *code)
{
	size_t i;

	if (buckets == NULL) {
		return NULL;
	}
	for (i = hash_ptr(code) & bucket_mask; buckets[i].code != NULL;
	     i = (i + 1) & bucket_mask) {
		if (buckets[i].code == code) {
			return &buckets[i];
		}
	}
	return NULL;
}

static int
point_cmp(const void *a, const void *b)
{
	const struct hook_point *x = a, *y = b;

	if (x->code != y->code) {
		return (uintptr_t)x->code < (uintptr_t)y->code ? -1 : 1;
	}
	if (x->event != y->event) {
		return x->event < y->event ? -1 : 1;
	}
	if (x->line != y->line) {
		return x->line < y->line ? -1 : 1;
	}
	if (x->slot != y->slot) {
		return x->slot < y->slot ? -1 : 1;
	}
	return 0;
}

/* A bucket array for n points, at most half full; NULL on ENOMEM. Allocated
 * before the points change, so a failure leaves the table as it was. */
static struct code_bucket *
alloc_buckets(size_t n, size_t *nbuckets)
{
	*nbuckets = 16;
	while (*nbuckets < 2 * n) {
		*nbuckets <<= 1;
	}
	return calloc(*nbuckets, sizeof(struct code_bucket));
}

/* Sort the points and index them by code into fresh (nbuckets of them). */
static void
install_index(struct code_bucket *fresh, size_t nbuckets)
{
	size_t i, j;

	qsort(points, npoints, sizeof(*points), point_cmp);
	for (i = 0; i < npoints; i = j) {
		size_t b = hash_ptr(points[i].code) & (nbuckets - 1);

		for (j = i; j < npoints && points[j].code == points[i].code; j++) {
		}
		while (fresh[b].code != NULL) {
			b = (b + 1) & (nbuckets - 1);
		}
		fresh[b].code = points[i].code;
		fresh[b].first = (uint32_t)i;
		fresh[b].count = (uint32_t)(j - i);
	}
	free(buckets);
	buckets = npoints ? fresh : NULL;
	if (!npoints) {
		free(fresh);
	}
	bucket_mask = nbuckets - 1;
	table_generation++;
}

/* Call the hook for every point of code that wants this event (and line);
 * the number of points that did. */
static int
fire(const struct code_bucket *bucket, int32_t event, int64_t line,
     PyObject *value)
{
	uint64_t generation = table_generation;
	uint32_t i, end = bucket->first + bucket->count;
	int matched = 0;

	for (i = bucket->first; i < end; i++) {
		const struct hook_point *point = &points[i];

		if (point->event != event
		    || (event == PYDI_EV_LINE && point->line != line)) {
			continue;
		}
		matched++;
		hook_hit(point->slot, event, point->line, value);
		/* Only the test recorder can run Python (and so a command)
		 * here; the table may be gone. */
		if (table_generation != generation) {
			break;
		}
	}
	return matched;
}

/* PY_START(code, offset) */
static PyObject *
mon_start(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	const struct code_bucket *bucket;

	(void)self;
	callback_count++;
	if (nargs >= 1 && (bucket = find_code(args[0])) != NULL) {
		fire(bucket, PYDI_EV_ENTRY, 0, NULL);
	}
	Py_RETURN_NONE;
}

/* PY_RETURN(code, offset, retval) */
static PyObject *
mon_return(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	const struct code_bucket *bucket;

	(void)self;
	callback_count++;
	if (nargs >= 3 && (bucket = find_code(args[0])) != NULL) {
		fire(bucket, PYDI_EV_RETURN, 0, args[2]);
	}
	Py_RETURN_NONE;
}

/* PY_UNWIND(code, offset, exc): a global event, so every unwinding frame
 * of the process comes here; the code table filters. Never DISABLE (for a
 * global event that raises into the application). */
static PyObject *
mon_unwind(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	const struct code_bucket *bucket;

	(void)self;
	callback_count++;
	if (nargs >= 3 && (bucket = find_code(args[0])) != NULL
	    && !exception_skipped(args[2])) {
		fire(bucket, PYDI_EV_EXCEPTION, 0, args[2]);
	}
	Py_RETURN_NONE;
}

/* LINE(code, line): a line no probe wants is DISABLEd (per instruction,
 * until the bootstrap re-arms the code's LINE events). */
static PyObject *
mon_line(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	const struct code_bucket *bucket;
	int matched = 0;

	(void)self;
	callback_count++;
	if (nargs < 2) {
		Py_RETURN_NONE;
	}
	bucket = find_code(args[0]);
	if (bucket != NULL) {
		matched = fire(bucket, PYDI_EV_LINE, int_arg(args[1]), NULL);
	}
	if (matched == 0 && monitoring_disable != NULL) {
		Py_INCREF(monitoring_disable);
		return monitoring_disable;
	}
	Py_RETURN_NONE;
}

static int
parse_point(PyObject *args, struct hook_point *point)
{
	PyObject *code;
	unsigned int slot;
	int event;
	long long line;

	if (!PyArg_ParseTuple(args, "OIiL", &code, &slot, &event, &line)) {
		return -1;
	}
	if (slot >= PYDI_MAX_GATES) {
		PyErr_Format(PyExc_ValueError, "slot %u out of range (0..%d)",
			     slot, PYDI_MAX_GATES - 1);
		return -1;
	}
	if (event < PYDI_EV_ENTRY || event > PYDI_EV_LINE) {
		PyErr_Format(PyExc_ValueError, "bad event %d", event);
		return -1;
	}
	point->code = code;
	point->slot = slot;
	point->event = event;
	point->line = event == PYDI_EV_LINE ? line : 0;
	return 0;
}

static ssize_t
find_point(const struct hook_point *wanted)
{
	size_t i;

	for (i = 0; i < npoints; i++) {
		if (point_cmp(&points[i], wanted) == 0) {
			return (ssize_t)i;
		}
	}
	return -1;
}

/* _monitor_add(code, slot, event, line) -> bool (False: already there) */
static PyObject *
monitor_add(PyObject *self, PyObject *args)
{
	struct hook_point point;
	struct code_bucket *fresh;
	size_t nbuckets;

	(void)self;
	if (parse_point(args, &point) < 0) {
		return NULL;
	}
	if (find_point(&point) >= 0) {
		Py_RETURN_FALSE;
	}
	fresh = alloc_buckets(npoints + 1, &nbuckets);
	if (fresh == NULL) {
		return PyErr_NoMemory();
	}
	if (npoints == points_cap) {
		size_t cap = points_cap ? 2 * points_cap : 64;
		struct hook_point *grown = realloc(points, cap * sizeof(*grown));

		if (grown == NULL) {
			free(fresh);
			return PyErr_NoMemory();
		}
		points = grown;
		points_cap = cap;
	}
	Py_INCREF(point.code);
	points[npoints++] = point;
	install_index(fresh, nbuckets);
	Py_RETURN_TRUE;
}

/* _monitor_remove(code, slot, event, line) -> bool (False: not there) */
static PyObject *
monitor_remove(PyObject *self, PyObject *args)
{
	struct hook_point point;
	struct code_bucket *fresh;
	size_t nbuckets;
	PyObject *code;
	ssize_t at;

	(void)self;
	if (parse_point(args, &point) < 0) {
		return NULL;
	}
	at = find_point(&point);
	if (at < 0) {
		Py_RETURN_FALSE;
	}
	fresh = alloc_buckets(npoints - 1, &nbuckets);
	if (fresh == NULL) {
		return PyErr_NoMemory();
	}
	code = points[at].code;
	points[at] = points[--npoints];
	install_index(fresh, nbuckets);
	Py_DECREF(code);
	Py_RETURN_TRUE;
}

/* _monitor_clear() -> number of points dropped */
static PyObject *
monitor_clear(PyObject *self, PyObject *unused)
{
	size_t i, n = npoints;

	(void)self;
	(void)unused;
	free(buckets);
	buckets = NULL;
	table_generation++;
	for (i = 0; i < n; i++) {
		Py_DECREF(points[i].code);
	}
	npoints = 0;
	return PyLong_FromSize_t(n);
}

/* _monitor_points() -> [(code, slot, event, line)] */
static PyObject *
monitor_points(PyObject *self, PyObject *unused)
{
	PyObject *list = PyList_New(0);
	size_t i;

	(void)self;
	(void)unused;
	for (i = 0; list != NULL && i < npoints; i++) {
		PyObject *item = Py_BuildValue("(OIiL)", points[i].code,
					       points[i].slot, points[i].event,
					       (long long)points[i].line);

		if (item == NULL || PyList_Append(list, item) < 0) {
			Py_XDECREF(item);
			Py_CLEAR(list);
			break;
		}
		Py_DECREF(item);
	}
	return list;
}

/* _monitor_config(disable, skip_types): sys.monitoring.DISABLE (None on
 * 3.11) and the exception types that are no exception event. */
static PyObject *
monitor_config(PyObject *self, PyObject *args)
{
	PyObject *disable, *types;
	Py_ssize_t i, n;

	(void)self;
	if (!PyArg_ParseTuple(args, "OO!", &disable, &PyTuple_Type, &types)) {
		return NULL;
	}
	n = PyTuple_Size(types);
	if (n > MAX_SKIP_TYPES) {
		PyErr_SetString(PyExc_ValueError, "too many exception types");
		return NULL;
	}
	for (i = 0; i < n; i++) {
		if (!PyType_Check(PyTuple_GetItem(types, i))) {
			PyErr_SetString(PyExc_TypeError, "skip_types: not a type");
			return NULL;
		}
	}
	for (i = 0; i < nskip_types; i++) {
		Py_DECREF((PyObject *)skip_types[i]);
	}
	for (i = 0; i < n; i++) {
		PyObject *type = PyTuple_GetItem(types, i);

		Py_INCREF(type);
		skip_types[i] = (PyTypeObject *)type;
	}
	nskip_types = (int)n;
	Py_XDECREF(monitoring_disable);
	monitoring_disable = disable == Py_None ? NULL : disable;
	Py_XINCREF(monitoring_disable);
	Py_RETURN_NONE;
}

/* -- gates and bookkeeping -- */

/* _gate(slot, armed, next_allowed_ns=0): what the agent does through
 * helper memory, for tests and for unhook (which disarms). */
static PyObject *
gate_set(PyObject *self, PyObject *args)
{
	unsigned int slot;
	int armed;
	unsigned long long next_allowed = 0;

	(void)self;
	if (!PyArg_ParseTuple(args, "Ip|K", &slot, &armed, &next_allowed)) {
		return NULL;
	}
	if (slot >= PYDI_MAX_GATES) {
		PyErr_Format(PyExc_ValueError, "slot %u out of range", slot);
		return NULL;
	}
	__atomic_store_n(&gates[slot].next_allowed_ns, next_allowed,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&gates[slot].armed, (uint32_t)armed, __ATOMIC_RELAXED);
	Py_RETURN_NONE;
}

/* _gate_stats(slot) -> (hits, skipped) */
static PyObject *
gate_stats(PyObject *self, PyObject *args)
{
	unsigned int slot;

	(void)self;
	if (!PyArg_ParseTuple(args, "I", &slot)) {
		return NULL;
	}
	if (slot >= PYDI_MAX_GATES) {
		PyErr_Format(PyExc_ValueError, "slot %u out of range", slot);
		return NULL;
	}
	return Py_BuildValue("(KK)", (unsigned long long)gates[slot].hits,
			     (unsigned long long)gates[slot].skipped);
}

static PyObject *
trap_count_get(PyObject *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	return PyLong_FromUnsignedLongLong(trap_count);
}

static PyObject *
callback_count_get(PyObject *self, PyObject *unused)
{
	(void)self;
	(void)unused;
	return PyLong_FromUnsignedLongLong(callback_count);
}

/* _record(on): start (a fresh list) or stop recording; returns what was
 * recorded (or None). Test mode: each trap appends a tuple. */
static PyObject *
record_set(PyObject *self, PyObject *args)
{
	PyObject *old = record_list;
	int on;

	(void)self;
	if (!PyArg_ParseTuple(args, "p", &on)) {
		return NULL;
	}
	record_list = NULL;
	if (on && (record_list = PyList_New(0)) == NULL) {
		record_list = old;
		return NULL;
	}
	if (old == NULL) {
		Py_RETURN_NONE;
	}
	return old;
}

/* _recorded() -> the records so far (the list is emptied) */
static PyObject *
recorded_get(PyObject *self, PyObject *unused)
{
	PyObject *fresh, *old = record_list;

	(void)self;
	(void)unused;
	if (old == NULL) {
		return PyList_New(0);
	}
	fresh = PyList_New(0);
	if (fresh == NULL) {
		return NULL;
	}
	record_list = fresh;
	return old;
}

static PyObject *
hooks_active_set(PyObject *self, PyObject *args)
{
	unsigned int count;

	(void)self;
	if (!PyArg_ParseTuple(args, "I", &count)) {
		return NULL;
	}
	__atomic_store_n(&pydi_helper_state.hooks_active, count, __ATOMIC_RELEASE);
	__atomic_store_n(&pydi_helper_state.hook_changes,
			 pydi_helper_state.hook_changes + 1, __ATOMIC_RELEASE);
	Py_RETURN_NONE;
}

static PyMethodDef hook_methods[] = {
	{"_hook", (PyCFunction)(void (*)(void))hook_call, METH_FASTCALL,
	 "_hook(slot, event, line[, value]): called by 3.11 hooked bytecode."},
	{"_mon_start", (PyCFunction)(void (*)(void))mon_start, METH_FASTCALL,
	 "sys.monitoring PY_START callback."},
	{"_mon_return", (PyCFunction)(void (*)(void))mon_return, METH_FASTCALL,
	 "sys.monitoring PY_RETURN callback."},
	{"_mon_unwind", (PyCFunction)(void (*)(void))mon_unwind, METH_FASTCALL,
	 "sys.monitoring PY_UNWIND callback."},
	{"_mon_line", (PyCFunction)(void (*)(void))mon_line, METH_FASTCALL,
	 "sys.monitoring LINE callback."},
	{"_monitor_add", monitor_add, METH_VARARGS,
	 "_monitor_add(code, slot, event, line) -> added"},
	{"_monitor_remove", monitor_remove, METH_VARARGS,
	 "_monitor_remove(code, slot, event, line) -> removed"},
	{"_monitor_clear", monitor_clear, METH_NOARGS,
	 "Drop every point of the code table."},
	{"_monitor_points", monitor_points, METH_NOARGS,
	 "The code table: [(code, slot, event, line)]."},
	{"_monitor_config", monitor_config, METH_VARARGS,
	 "_monitor_config(disable, skip_exception_types)"},
	{"_gate", gate_set, METH_VARARGS,
	 "_gate(slot, armed, next_allowed_ns=0)"},
	{"_gate_stats", gate_stats, METH_VARARGS,
	 "_gate_stats(slot) -> (hits, skipped)"},
	{"_trap_count", trap_count_get, METH_NOARGS,
	 "Calls that passed a gate (test aid)."},
	{"_callback_count", callback_count_get, METH_NOARGS,
	 "sys.monitoring callbacks run (test aid)."},
	{"_record", record_set, METH_VARARGS,
	 "_record(on) -> records so far (test aid)."},
	{"_recorded", recorded_get, METH_NOARGS,
	 "Records so far, emptied (test aid)."},
	{"_set_hooks_active", hooks_active_set, METH_VARARGS,
	 "The set of hooks changed: publish how many are active."},
	{NULL, NULL, 0, NULL},
};

void
hook_after_fork(void)
{
	for (size_t slot = 0; slot < PYDI_MAX_GATES; slot++) {
		__atomic_store_n(&gates[slot].armed, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&gates[slot].next_allowed_ns, 0, __ATOMIC_RELAXED);
		__atomic_store_n(&gates[slot].flags, 0, __ATOMIC_RELAXED);
	}
}

/*
 * Where the interpreter keeps its cached small ints, so that BPF knows an
 * argument's value by its address without reading the object. Published
 * only if asking twice for each gives the same object (cached, not made
 * anew) and they lie evenly spaced in one array.
 */
static void
publish_small_ints(void)
{
	uintptr_t first = 0, size = 0;
	int ok = 1;

	for (long v = PYDI_SMALL_INT_MIN; ok && v <= PYDI_SMALL_INT_MAX; v++) {
		PyObject *a = PyLong_FromLong(v), *b = PyLong_FromLong(v);
		uintptr_t at = (uintptr_t)a;

		ok = a != NULL && a == b;
		if (ok && v == PYDI_SMALL_INT_MIN) {
			first = at;
		}
		else if (ok && v == PYDI_SMALL_INT_MIN + 1) {
			size = at - first;
			ok = at > first;
		}
		else if (ok) {
			ok = at == first + (uintptr_t)(v - PYDI_SMALL_INT_MIN) * size;
		}
		Py_XDECREF(a);
		Py_XDECREF(b);
	}
	PyErr_Clear();
	if (ok) {
		pydi_helper_state.small_int_size = size;
		pydi_helper_state.small_ints = first;
	}
}

int
hook_module_init(PyObject *module)
{
	if (PyModule_AddFunctions(module, hook_methods) < 0
	    || PyModule_AddIntConstant(module, "MAX_GATES", PYDI_MAX_GATES) < 0
	    || PyModule_AddIntConstant(module, "EV_ENTRY", PYDI_EV_ENTRY) < 0
	    || PyModule_AddIntConstant(module, "EV_RETURN", PYDI_EV_RETURN) < 0
	    || PyModule_AddIntConstant(module, "EV_EXCEPTION",
				       PYDI_EV_EXCEPTION) < 0
	    || PyModule_AddIntConstant(module, "EV_LINE", PYDI_EV_LINE) < 0) {
		return -1;
	}
	pydi_helper_state.gates = (uint64_t)(uintptr_t)gates;
	pydi_helper_state.hook_fn = (uint64_t)(uintptr_t)&pydi_hook_event;
	pydi_helper_state.ends = (uint64_t)(uintptr_t)&ends;
	publish_small_ints();
	return 0;
}
