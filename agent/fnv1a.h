/* SPDX-License-Identifier: MIT */
/* FNV-1a, 64 bits: fingerprints and change detection, not security. */
#ifndef PYDI_FNV1A_H
#define PYDI_FNV1A_H

#include <stddef.h>
#include <stdint.h>

#define FNV1A_INIT	0xcbf29ce484222325ULL

static inline uint64_t fnv1a(uint64_t h, const void *data, size_t len)
{
	const unsigned char *p = data;

	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

#endif /* PYDI_FNV1A_H */
