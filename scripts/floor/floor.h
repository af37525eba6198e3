/* SPDX-License-Identifier: MIT */
/*
 * The floor of a function probe's cost on this machine (scripts/bench 2 3):
 * what a capture of three scalar arguments cannot do without, on the shape
 * of pydi's hook point, with none of pydi's own logic.
 */
#ifndef PYDI_FLOOR_H
#define PYDI_FLOOR_H

#define FLOOR_NONE	0	/* nothing attached */
#define FLOOR_EMPTY	1	/* programs that return at once: the kernel entries */
#define FLOOR_CAPTURE	2	/* programs doing the unavoidable work */

/* A probe-map key as pydi's (tgid, event, code, line). */
struct floor_key {
	unsigned int tgid;
	unsigned int event;
	unsigned long long code;
	long long line;
};

/* An entry event: a header, three argument slots, three object heads. */
struct floor_entry {
	unsigned long long header[11];
	unsigned long long slots[3];
	unsigned long long heads[3][8];
};

/* An end event: the header only (the return value is not captured). */
struct floor_end {
	unsigned long long header[11];
};

#endif /* PYDI_FLOOR_H */
