// SPDX-License-Identifier: MIT
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "capture_wire.h"

#define HEAD offsetof(struct pyprobe_event, data)

static struct pyprobe_event *event(uint32_t nvars, uint32_t nframes, uint32_t objs_len)
{
	struct pyprobe_event *ev = calloc(1, sizeof(*ev));
	uint8_t *p = ev->data;

	ev->slot = 7;
	ev->event = PYPROBE_EV_ENTRY;
	ev->frame = 0x7000;
	ev->nvars = nvars;
	ev->nframes = nframes;
	ev->nobjs = objs_len ? 1 : 0;
	for (uint32_t i = 0; i < nvars; i++, p += 8)
		*(uint64_t *)p = 0x1000 + i;
	for (uint32_t i = 0; i < nframes; i++, p += 16) {
		((uint64_t *)p)[0] = 0x2000 + i;	/* code */
		((uint64_t *)p)[1] = 0x3000 + i;	/* instr_ptr */
	}
	for (uint32_t i = 0; i < objs_len; i++)
		*p++ = (uint8_t)(0xa0 + i);
	ev->data_len = (uint32_t)(p - ev->data);
	return ev;
}

static void test_spreads_vars_frames_and_objects(void **state)
{
	struct pyprobe_event *ev = event(3, 2, 40);
	struct pyprobe_capture *cap = malloc(sizeof(*cap));
	ssize_t n;

	(void)state;
	n = capture_expand(ev, HEAD + ev->data_len, cap);
	assert_int_equal(n, offsetof(struct pyprobe_capture, data) + 40);
	assert_int_equal(cap->slot, 7);
	assert_int_equal(cap->frame, 0x7000);
	assert_int_equal(cap->nvars, 3);
	assert_int_equal(cap->vars[0], 0x1000);
	assert_int_equal(cap->vars[2], 0x1002);
	assert_int_equal(cap->nframes, 2);
	assert_int_equal(cap->frames[1].code, 0x2001);
	assert_int_equal(cap->frames[1].instr_ptr, 0x3001);
	assert_int_equal(cap->data_len, 40);
	assert_int_equal(cap->data[0], 0xa0);
	assert_int_equal(cap->data[39], 0xa0 + 39);
	free(ev);
	free(cap);
}

static void test_return_event_has_objects_only(void **state)
{
	struct pyprobe_event *ev = event(0, 0, 24);
	struct pyprobe_capture *cap = malloc(sizeof(*cap));

	(void)state;
	assert_int_equal(capture_expand(ev, HEAD + ev->data_len, cap),
			 offsetof(struct pyprobe_capture, data) + 24);
	assert_int_equal(cap->nvars, 0);
	assert_int_equal(cap->data[0], 0xa0);
	free(ev);
	free(cap);
}

static void test_rejects_what_does_not_hold_together(void **state)
{
	struct pyprobe_event *ev = event(4, 1, 16);
	struct pyprobe_capture *cap = malloc(sizeof(*cap));
	size_t size = HEAD + ev->data_len;

	(void)state;
	assert_int_equal(capture_expand(ev, HEAD - 1, cap), -EINVAL);
	/* data_len past what the ring buffer gave */
	assert_int_equal(capture_expand(ev, size - 1, cap), -EINVAL);
	/* more vars and frames than data */
	ev->nvars = 10;
	assert_int_equal(capture_expand(ev, size, cap), -EINVAL);
	ev->nvars = PYPROBE_MAX_VARS + 1;
	assert_int_equal(capture_expand(ev, size, cap), -EINVAL);
	ev->nvars = 4;
	ev->nframes = PYPROBE_MAX_FRAMES + 1;
	assert_int_equal(capture_expand(ev, size, cap), -EINVAL);
	ev->nframes = 1;
	ev->data_len = UINT32_MAX;
	assert_int_equal(capture_expand(ev, size, cap), -EINVAL);
	free(ev);
	free(cap);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spreads_vars_frames_and_objects),
		cmocka_unit_test(test_return_event_has_objects_only),
		cmocka_unit_test(test_rejects_what_does_not_hold_together),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
