/* SPDX-License-Identifier: MIT */
/* Process lifecycle events the agent's discovery consumes. */
#ifndef PYDI_PROC_EVENTS_H
#define PYDI_PROC_EVENTS_H

enum pydi_proc_event_kind {
	PYDI_PROC_EXEC = 1,
	PYDI_PROC_EXIT = 2,
	PYDI_PROC_FORK = 3,	/* a new process (not a thread) */
};

struct pydi_proc_event {
	__u32 kind;		/* enum pydi_proc_event_kind */
	__u32 pid;		/* tgid, in the initial pid namespace */
	__u64 start_time_ns;	/* task start time: tells pid reuse apart */
};

#endif /* PYDI_PROC_EVENTS_H */
