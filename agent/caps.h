/* SPDX-License-Identifier: MIT */
/*
 * The capabilities the agent needs, checked at start (deploy/'s manifests
 * grant exactly these; a test holds the two lists equal).
 */
#ifndef PYDI_CAPS_H
#define PYDI_CAPS_H

#include <stddef.h>

struct agent_cap {
	int cap;		/* CAP_* number */
	const char *name;	/* "CAP_BPF" */
	const char *why;	/* one line: what fails without it */
};

extern const struct agent_cap agent_caps[];
extern const size_t agent_caps_count;

/* 0 if the effective set holds them all; -EPERM with the missing ones
 * named in err ("missing CAP_BPF (load BPF programs), …"). */
int caps_check(char *err, size_t err_len);

#endif /* PYDI_CAPS_H */
