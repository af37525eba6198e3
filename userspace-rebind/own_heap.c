/* SPDX-License-Identifier: MIT */
/*
 * Why: the helper compiles and runs its bootstrap, and each command builds
 * objects, in the app's process. Left to pymalloc, what survives of that
 * (about 0.5 MB) lands in the pools the app's request path allocates from
 * and scatters it: a FastAPI service served about 2 % fewer requests after
 * the bootstrap alone, and as much after compiling its source and throwing
 * the code away; churn that leaves nothing behind cost nothing.
 *
 * How: while entered, the MEM and OBJ domains allocate with malloc (the RAW
 * domain's allocator whenever the allocator is plain pymalloc) and free,
 * reallocate through pymalloc's own functions. pymalloc hands any block
 * that is not in its arenas to PyMem_RawFree/RawRealloc (its own blocks
 * above 512 bytes are such blocks), so every object stays freeable by
 * whoever frees it, whichever allocator is installed then. Only plain
 * pymalloc is swapped: debug hooks would reject a block without their
 * header, and tracemalloc would lose track. (sys.getallocatedblocks() then
 * undercounts: pymalloc counts a foreign block when it frees one.)
 *
 * The allocator API (PyMemAllocatorEx, cpython/pymem.h) is outside the
 * limited API, so it is looked up by name; its layout is the same from 3.5
 * to 3.14.
 */
#include <dlfcn.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "own_heap.h"

struct mem_allocator {
	void *ctx;
	void *(*malloc)(void *ctx, size_t size);
	void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
	void *(*realloc)(void *ctx, void *ptr, size_t new_size);
	void (*free)(void *ctx, void *ptr);
};

enum { DOMAIN_MEM = 1, DOMAIN_OBJ = 2, NDOMAINS = 3 };

typedef void (*allocator_fn)(int domain, struct mem_allocator *allocator);
typedef const char *(*allocator_name_fn)(void);

static allocator_fn get_allocator, set_allocator;
static allocator_name_fn allocator_name;
static int looked_up;
static int depth;
static int swapped;
static struct mem_allocator pymalloc[NDOMAINS];

static void *
own_malloc(void *ctx, size_t size)
{
	(void)ctx;
	return malloc(size ? size : 1);
}

static void *
own_calloc(void *ctx, size_t nelem, size_t elsize)
{
	(void)ctx;
	return nelem && elsize ? calloc(nelem, elsize) : calloc(1, 1);
}

/* pymalloc's realloc and free take any block, its own or malloc's. Ours
 * never read their ctx: a thread of an interpreter with its own GIL (3.12+)
 * may read the allocator while it is being swapped, one field old, the next
 * new, and pymalloc's own functions do not read it either. */
static void *
realloc_in(int domain, void *ptr, size_t new_size)
{
	if (ptr == NULL) {
		return own_malloc(NULL, new_size);
	}
	return pymalloc[domain].realloc(pymalloc[domain].ctx, ptr, new_size);
}

static void *
own_realloc_mem(void *ctx, void *ptr, size_t new_size)
{
	(void)ctx;
	return realloc_in(DOMAIN_MEM, ptr, new_size);
}

static void *
own_realloc_obj(void *ctx, void *ptr, size_t new_size)
{
	(void)ctx;
	return realloc_in(DOMAIN_OBJ, ptr, new_size);
}

static void
own_free_mem(void *ctx, void *ptr)
{
	(void)ctx;
	pymalloc[DOMAIN_MEM].free(pymalloc[DOMAIN_MEM].ctx, ptr);
}

static void
own_free_obj(void *ctx, void *ptr)
{
	(void)ctx;
	pymalloc[DOMAIN_OBJ].free(pymalloc[DOMAIN_OBJ].ctx, ptr);
}

static const struct mem_allocator own[NDOMAINS] = {
	[DOMAIN_MEM] = { NULL, own_malloc, own_calloc, own_realloc_mem, own_free_mem },
	[DOMAIN_OBJ] = { NULL, own_malloc, own_calloc, own_realloc_obj, own_free_obj },
};

static int
look_up(void)
{
	if (!looked_up) {
		looked_up = 1;
		get_allocator = (allocator_fn)dlsym(RTLD_DEFAULT, "PyMem_GetAllocator");
		set_allocator = (allocator_fn)dlsym(RTLD_DEFAULT, "PyMem_SetAllocator");
		allocator_name = (allocator_name_fn)dlsym(RTLD_DEFAULT,
			"_PyMem_GetCurrentAllocatorName");
	}
	return get_allocator && set_allocator && allocator_name;
}

static int
is_ours(int domain)
{
	struct mem_allocator now;

	get_allocator(domain, &now);
	return now.free == own[domain].free;
}

void
own_heap_enter(void)
{
	const char *name;

	if (depth++ > 0 || !look_up()) {
		return;
	}
	name = allocator_name();
	if (name == NULL || strcmp(name, "pymalloc") != 0) {
		return;
	}
	for (int d = DOMAIN_MEM; d <= DOMAIN_OBJ; d++) {
		struct mem_allocator mine = own[d];

		get_allocator(d, &pymalloc[d]);
		set_allocator(d, &mine);
	}
	swapped = 1;
}

void
own_heap_leave(void)
{
	if (--depth > 0 || !swapped) {
		return;
	}
	swapped = 0;
	for (int d = DOMAIN_MEM; d <= DOMAIN_OBJ; d++) {
		/* Someone who wrapped ours meanwhile (tracemalloc started while
		 * a command had dropped the GIL) keeps it: still correct. */
		if (is_ours(d)) {
			set_allocator(d, &pymalloc[d]);
		}
	}
}

void
own_heap_after_fork(void)
{
	/* Forked while a command had dropped the GIL: the child has no command
	 * running, so nothing is entered. */
	depth = 1;
	own_heap_leave();
}
