// SPDX-License-Identifier: MIT
/* /proc/PID/maps is text the target shapes (path names are its own). */
#include <stdint.h>
#include <stdlib.h>

#include "procmaps.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proc_maps maps = { 0 };

	/* Not NUL-terminated on purpose: the parser must honour len. */
	if (proc_maps_parse((const char *)data, size, &maps) != 0)
		return 0;
	for (size_t i = 0; i < maps.count; i++) {
		const struct map_entry *e = &maps.entries[i];

		if (!e->path)
			abort();
		proc_maps_find(&maps, e->start);
	}
	proc_maps_find(&maps, 0);
	proc_maps_find(&maps, UINT64_MAX);
	proc_maps_free(&maps);
	return 0;
}
