// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>

#include "capture_wire.h"

#define HEAD_BYTES offsetof(struct pyprobe_event, data)

_Static_assert(offsetof(struct pyprobe_capture, vars) == HEAD_BYTES,
	       "an event and a capture share their head");

ssize_t capture_expand(const void *data, size_t size, struct pyprobe_capture *cap)
{
	const struct pyprobe_event *ev = data;
	size_t vars_len, frames_len, objs_len;

	if (size < HEAD_BYTES)
		return -EINVAL;
	if (ev->data_len > size - HEAD_BYTES || ev->data_len > sizeof(ev->data) ||
	    ev->nvars > PYPROBE_MAX_VARS || ev->nframes > PYPROBE_MAX_FRAMES)
		return -EINVAL;
	vars_len = (size_t)ev->nvars * sizeof(cap->vars[0]);
	frames_len = (size_t)ev->nframes * sizeof(cap->frames[0]);
	if (vars_len + frames_len > ev->data_len)
		return -EINVAL;
	objs_len = ev->data_len - vars_len - frames_len;

	memcpy(cap, ev, HEAD_BYTES);
	memcpy(cap->vars, ev->data, vars_len);
	memcpy(cap->frames, ev->data + vars_len, frames_len);
	memcpy(cap->data, ev->data + vars_len + frames_len, objs_len);
	cap->data_len = (__u32)objs_len;
	return (ssize_t)(offsetof(struct pyprobe_capture, data) + objs_len);
}
