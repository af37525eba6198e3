/* SPDX-License-Identifier: MIT */
/*
 * The contract between the agent and the helper it loads into a target:
 * one exported struct in helper memory that the agent reads and writes with
 * process_vm_readv/writev, and two eventfds it reaches through
 * /proc/PID/fd/N. One command is in flight at a time.
 *
 * A command: the agent writes JSON into cmd_buf, sets cmd_len, increments
 * cmd_seq, then writes 1 to wake_fd. The helper's own thread takes the GIL,
 * runs it, writes the JSON reply into reply_buf, sets reply_len, sets
 * reply_seq = cmd_seq and writes 1 to done_fd.
 *
 * The lease: while lease_deadline_ns (CLOCK_MONOTONIC) is non-zero and in
 * the past, the helper reverts every hook it made and clears the deadline.
 */
#ifndef PYDI_HELPER_ABI_H
#define PYDI_HELPER_ABI_H

#include <stdint.h>

#define PYDI_HELPER_MAGIC	0x706c656869647970ULL	/* "pydihelp" */
#define PYDI_HELPER_ABI		5	/* 2: the hook passes the frame; 3: and its code,
					   PYDI_EV_PAIRED; 4: gate flags, the ends ring;
					   5: hook_changes */
#define PYDI_HELPER_STATE_SYM	"pydi_helper_state"
/* int pydi_helper_boot(const char *text): the injector's entry (control.c). */
#define PYDI_HELPER_BOOT_SYM	"pydi_helper_boot"
#define PYDI_HELPER_MEMFD_NAME	"pydi-helper"
#define PYDI_HELPER_MODULE	"_pydi_helper"

#define PYDI_CMD_MAX		(256u << 10)
#define PYDI_REPLY_MAX		(2u << 20)

/*
 * Hook events, as the native hook passes them to pydi_hook_event and BPF
 * keys its probe map by them.
 */
enum pydi_hook_event {
	PYDI_EV_ENTRY = 1,	/* function entry (first start for generators) */
	PYDI_EV_RETURN = 2,	/* value returned (final value for generators) */
	PYDI_EV_EXCEPTION = 3,	/* exception leaving the function */
	PYDI_EV_LINE = 4,	/* a probed line is about to run */
};

/*
 * Or'ed into a call's entry when the hook will report its end too (it
 * remembered the call), and into that end: BPF then need not remember the
 * call itself. Without it BPF pairs an end with its entry on its own.
 */
#define PYDI_EV_PAIRED 0x100

/*
 * One gate per probe slot, kept current by the agent. The native hook checks
 * it before calling pydi_hook_event, so a call that BPF would drop (probe
 * disarmed, or rate-limited until next_allowed_ns) never pays the uprobe
 * trap. Skipped calls are still counted.
 */
#define PYDI_MAX_GATES 1024

struct pydi_gate {
	uint32_t armed;			/* BPF is attached for this slot */
	uint32_t flags;			/* PYDI_GATE_* */
	uint64_t next_allowed_ns;	/* CLOCK_MONOTONIC; 0 = no rate limit */
	uint64_t hits;			/* calls (entries) and line hits */
	uint64_t skipped;		/* of those, the ones the gate kept from the trap */
};

/*
 * The probe captures no return value: a call the hook let through that
 * returns (an exception still traps) is told in the ends ring, not trapped.
 */
#define PYDI_GATE_END_IN_RING	1u

/*
 * The ends of calls told without a trap: the hook writes a record, then
 * bumps head (release); record i is at rec[i % PYDI_ENDS_MAX] until
 * PYDI_ENDS_MAX later ones overwrite it. The agent reads head, the records
 * it has not seen, then head again: what may have been overwritten meanwhile
 * is lost, never misread. The entry of the same call went to BPF first; the
 * agent pairs the two by frame address and time.
 */
#define PYDI_ENDS_MAX	4096		/* a power of 2 */

struct pydi_end {
	uint64_t frame;			/* the call's frame address */
	uint64_t ts_ns;			/* CLOCK_MONOTONIC, as bpf_ktime_get_ns() */
	uint32_t slot;
	uint32_t reserved;
};

struct pydi_ends {
	uint64_t head;			/* records written so far */
	struct pydi_end rec[PYDI_ENDS_MAX];
};

enum pydi_helper_status {
	PYDI_HELPER_LOADING = 0,
	PYDI_HELPER_READY = 1,
	PYDI_HELPER_STOPPED = 2,
	PYDI_HELPER_FAILED = 3,
};

struct pydi_helper_state {
	uint64_t magic;
	uint32_t abi;
	uint32_t status;		/* enum pydi_helper_status */
	int32_t pid;			/* getpid() of the process the thread serves */
	int32_t wake_fd;		/* eventfd: agent -> helper */
	int32_t done_fd;		/* eventfd: helper -> agent */
	uint32_t hooks_active;
	uint64_t cmd_seq;
	uint64_t reply_seq;
	uint64_t cmd_len;
	uint64_t reply_len;
	uint64_t lease_deadline_ns;
	uint64_t lease_expiries;	/* times the lease lapsed and hooks reverted */
	uint64_t commands_run;
	uint64_t cmd_buf;		/* address of the command buffer */
	uint64_t reply_buf;		/* address of the reply buffer */
	uint64_t gates;			/* address of struct pydi_gate[PYDI_MAX_GATES] */
	uint64_t hook_fn;		/* address of pydi_hook_event */
	char error[256];		/* why status is FAILED */
	/*
	 * Where a thread state keeps its running frame and a frame its code,
	 * written by the agent from its offsets (frame_known = 0 until then).
	 * With them the hook remembers which calls it let through, so the end
	 * of a call whose start the gate stopped does not pay the trap either,
	 * and hands BPF the frame and code it would otherwise read itself.
	 */
	uint64_t frame_known;
	uint64_t tstate_cframe;		/* UINT64_MAX: the frame hangs off tstate */
	uint64_t cframe_current_frame;
	uint64_t tstate_current_frame;
	uint64_t frame_code;
	uint64_t code_mask;		/* clears a tagged reference's bits (3.14) */
	uint64_t ends;			/* address of struct pydi_ends */
	/*
	 * The interpreter's cached small ints, from PYDI_SMALL_INT_MIN up: where
	 * the first is and how far apart they are (0, 0 unless they are one
	 * evenly spaced array), so BPF knows their values by address.
	 */
	uint64_t small_ints;
	uint64_t small_int_size;
	/*
	 * Bumped whenever the set of hooks changes (hook, unhook, revert): on
	 * 3.11 code objects may have moved, so a pydi asks for the "hooks"
	 * list only when this moved, not on every command.
	 */
	uint64_t hook_changes;
};

#define PYDI_SMALL_INT_MIN	(-5)
#define PYDI_SMALL_INT_MAX	256

#endif /* PYDI_HELPER_ABI_H */
