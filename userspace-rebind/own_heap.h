/* SPDX-License-Identifier: MIT */
/*
 * Keeps the helper's Python objects out of the app's pymalloc pools: between
 * own_heap_enter() and own_heap_leave() (GIL held) new objects come from
 * malloc, on the calling thread's glibc arena.
 */
#ifndef PYDI_OWN_HEAP_H
#define PYDI_OWN_HEAP_H

/* Both return nothing and never fail: where the interpreter's allocator is
 * not plain pymalloc (debug hooks, tracemalloc, PYTHONMALLOC=malloc) they
 * leave it alone. Calls nest. */
void own_heap_enter(void);
void own_heap_leave(void);
/* In a forked child: undo an enter the fork caught mid-command. */
void own_heap_after_fork(void);

#endif /* PYDI_OWN_HEAP_H */
