// SPDX-License-Identifier: MIT
#include <stdlib.h>
#include <string.h>

#include "code_cache.h"

void code_cache_init(struct code_cache *cc, const struct mem_reader *mr,
		     const struct py_offsets *off)
{
	memset(cc, 0, sizeof(*cc));
	cc->mr = mr;
	cc->off = off;
}

void code_cache_clear(struct code_cache *cc)
{
	for (size_t i = 0; i < CODE_CACHE_SLOTS; i++) {
		if (!cc->slots[i])
			continue;
		pycode_free(cc->slots[i]);
		free(cc->slots[i]);
		cc->slots[i] = NULL;
	}
	cc->count = 0;
}

const struct pycode_info *code_cache_get(struct code_cache *cc, uint64_t addr)
{
	size_t i = (addr >> 4) & (CODE_CACHE_SLOTS - 1);
	struct pycode_info *ci;

	for (size_t probe = 0; probe < 8; probe++) {
		size_t at = (i + probe) & (CODE_CACHE_SLOTS - 1);

		if (cc->slots[at] && cc->slots[at]->addr == addr)
			return cc->slots[at];
		if (!cc->slots[at]) {
			i = at;
			goto miss;
		}
	}
	/* A long run of collisions: start over rather than grow. */
	code_cache_clear(cc);
	i = (addr >> 4) & (CODE_CACHE_SLOTS - 1);
miss:
	ci = malloc(sizeof(*ci));
	if (!ci)
		return NULL;
	if (pycode_read(cc->mr, cc->off, addr, ci)) {
		free(ci);
		return NULL;
	}
	cc->slots[i] = ci;
	cc->count++;
	return ci;
}

int pycode_line_at(const struct pycode_info *ci, uint64_t offset)
{
	int last = -1;

	for (size_t i = 0; i < ci->nranges; i++) {
		if (offset >= ci->ranges[i].start && offset < ci->ranges[i].end)
			return ci->ranges[i].line >= 0 ? ci->ranges[i].line : last;
		if (ci->ranges[i].line >= 0)
			last = ci->ranges[i].line;
	}
	return last;
}
