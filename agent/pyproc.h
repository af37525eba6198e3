/* SPDX-License-Identifier: MIT */
/*
 * A CPython process seen from outside: where the interpreter lives, which
 * version, where _PyRuntime is, the struct layouts, service identity,
 * namespaces, and whether pydi can instrument it.
 */
#ifndef PYDI_PYPROC_H
#define PYDI_PYPROC_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "memread.h"
#include "py_offsets.h"
#include "pyenv_attrs.h"

struct pyproc {
	pid_t pid;
	uint64_t start_time;		/* clock ticks after boot: pid + this = identity */
	char exe[PATH_MAX];		/* /proc/PID/exe as the target sees it */

	/* The ELF file holding the interpreter: the main binary or libpython. */
	char interp_path[PATH_MAX];
	bool interp_in_libpython;
	uint64_t interp_load_base;	/* where file offset 0 is mapped */
	uint64_t interp_bias;		/* runtime address - ELF vaddr */
	uint64_t interp_map_start;	/* a mapping of it, for /proc/PID/map_files */
	uint64_t interp_map_end;
	bool has_usdt;

	uint64_t runtime_addr;		/* _PyRuntime */
	bool version_known;
	struct py_version version;
	enum py_offsets_source offsets_source;
	struct py_offsets offsets;
	bool free_threaded;
	bool untested;

	struct service_identity identity;

	bool other_mnt_ns;
	bool other_pid_ns;
	pid_t ns_pid;			/* pid inside its own pid namespace */

	bool instrumentable;
	char reason[256];		/* why not, when !instrumentable */

	struct proc_mem mem;
	struct mem_reader reader;
};

/*
 * Inspect pid. 0 on success; -ESRCH no such process; -ENOEXEC not a CPython
 * process; other negative errno on failure. err gets a one-line reason.
 * A process pydi cannot instrument still succeeds (instrumentable = false).
 */
int pyproc_open(pid_t pid, struct pyproc *pp, char *err, size_t err_len);
void pyproc_close(struct pyproc *pp);

/* pyproc_open, then insist on struct offsets (reading objects needs them):
 * -ENOTSUP with the reason in err if there are none. */
int pyproc_open_with_offsets(pid_t pid, struct pyproc *pp, char *err,
			     size_t err_len);

/* Field 22 of /proc/PID/stat (clock ticks after boot): 0 or -errno. */
int proc_read_start_time(pid_t pid, uint64_t *start_time);

/* A process's service identity from /proc/PID/environ: 0 or -errno. */
int service_identity_read(pid_t pid, struct service_identity *id);

/* Human name of an offsets source: "table", "debug_offsets", "none". */
const char *py_offsets_source_name(enum py_offsets_source src);

#endif /* PYDI_PYPROC_H */
