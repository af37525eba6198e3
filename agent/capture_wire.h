/* SPDX-License-Identifier: MIT */
/* Events as BPF writes them (compact) into captures as decoders read them. */
#ifndef PYDI_CAPTURE_WIRE_H
#define PYDI_CAPTURE_WIRE_H

#include <stddef.h>
#include <sys/types.h>

#include "pyprobe.h"

/*
 * Spread the ring-buffer event at data (size bytes) into *cap: vars, frames
 * and objects each in their place. Returns the capture's size (its header
 * and objects), or -EINVAL if the event does not hold together.
 */
ssize_t capture_expand(const void *data, size_t size, struct pyprobe_capture *cap);

#endif /* PYDI_CAPTURE_WIRE_H */
