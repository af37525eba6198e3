// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "elf_image.h"
#include "errbuf.h"
#include "mapped_elf.h"
#include "procmaps.h"
#include "pyproc.h"

#define ENVIRON_MAX_BYTES	(1u << 20)
#define STATUS_MAX_BYTES	(64u << 10)
#define CAP_SYS_PTRACE_BIT	19

const char *py_offsets_source_name(enum py_offsets_source src)
{
	switch (src) {
	case PY_OFFSETS_TABLE:
		return "table";
	case PY_OFFSETS_DEBUG_OFFSETS:
		return "debug_offsets";
	default:
		return "none";
	}
}

static void not_instrumentable(struct pyproc *pp, const char *fmt, ...)
{
	va_list ap;

	if (!pp->instrumentable)
		return;	/* keep the first reason: it is the one to fix first */
	pp->instrumentable = false;
	va_start(ap, fmt);
	vsnprintf(pp->reason, sizeof(pp->reason), fmt, ap);
	va_end(ap);
}

static const char *base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

/* Field 22 of /proc/PID/stat, counted after the ")" that ends comm. */
int proc_read_start_time(pid_t pid, uint64_t *start_time)
{
	char path[64], *text, *p;
	size_t len;
	int err, field;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	err = read_file_bounded(path, STATUS_MAX_BYTES, &text, &len);
	if (err)
		return err;
	p = strrchr(text, ')');
	err = -EINVAL;
	for (field = 2; p && *p; p++) {
		if (*p != ' ')
			continue;
		if (++field == 22) {
			*start_time = strtoull(p + 1, NULL, 10);
			err = 0;
			break;
		}
	}
	free(text);
	return err;
}

/* A "Key:\tvalue" line of /proc/PID/status, or NULL. Points into text. */
static const char *status_field(const char *text, const char *key)
{
	size_t key_len = strlen(key);

	for (const char *line = text; line && *line;) {
		if (strncmp(line, key, key_len) == 0 && line[key_len] == ':') {
			line += key_len + 1;
			while (*line == ' ' || *line == '\t')
				line++;
			return line;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return NULL;
}

static bool is_libpython(const char *path)
{
	return strncmp(base_name(path), "libpython3", 10) == 0;
}

/* Try one mapped file as the interpreter: 1 if it is, 0 if not. */
static int try_interpreter(struct pyproc *pp, const struct proc_maps *maps,
			   const struct map_entry *m, struct elf_image **img_out)
{
	struct elf_image *img;
	uint64_t runtime_vaddr, bias;
	int fd;

	fd = mapped_file_open(pp->pid, m);
	if (fd < 0)
		return fd;
	if (elf_image_open_fd(fd, &img))
		return 0;
	if (elf_image_symbol(img, "_PyRuntime", &runtime_vaddr, NULL) ||
	    mapped_elf_bias(img, maps, m, &bias)) {
		elf_image_close(img);
		return 0;
	}
	snprintf(pp->interp_path, sizeof(pp->interp_path), "%s", m->path);
	pp->interp_in_libpython = is_libpython(m->path);
	pp->interp_bias = bias;
	pp->interp_load_base = m->start - m->offset;
	pp->interp_map_start = m->start;
	pp->interp_map_end = m->end;
	pp->runtime_addr = runtime_vaddr + bias;
	pp->has_usdt = elf_image_has_section(img, ".note.stapsdt");
	*img_out = img;
	return 1;
}

static int find_interpreter(struct pyproc *pp, const struct proc_maps *maps,
			    struct elf_image **img)
{
	int last_err = 0;

	/* The main binary first (statically linked interpreter), then any
	 * libpython: each file is tried once, through its first mapping. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < maps->count; i++) {
			const struct map_entry *m = &maps->entries[i];
			int found;

			if (m->path[0] != '/' || mapped_file_first(maps, m) != m)
				continue;
			if (pass == 0 && strcmp(m->path, pp->exe) != 0)
				continue;
			if (pass == 1 && !is_libpython(m->path))
				continue;
			found = try_interpreter(pp, maps, m, img);
			if (found == 1)
				return 0;
			if (found < 0)
				last_err = found;
		}
	}
	return last_err ? last_err : -ENOEXEC;
}

/* "python3.10" or "libpython3.10.so": the version a file name claims. */
static bool version_from_name(const char *path, struct py_version *v)
{
	const char *p = strstr(base_name(path), "python3.");
	int minor;

	if (!p || sscanf(p, "python3.%d", &minor) != 1)
		return false;
	memset(v, 0, sizeof(*v));
	v->major = 3;
	v->minor = minor;
	return true;
}

static void read_version(struct pyproc *pp, struct elf_image *img)
{
	uint64_t vaddr;
	uint32_t hex;

	/* Py_Version exists from 3.11 on; older interpreters only have a
	 * version in their file name. */
	if (elf_image_symbol(img, "Py_Version", &vaddr, NULL) == 0 &&
	    mem_read_u32(&pp->reader, vaddr + pp->interp_bias, &hex) == 0 &&
	    (hex >> 24) == 3) {
		py_version_from_hex(hex, &pp->version);
		pp->version_known = true;
		return;
	}
	if (!version_from_name(pp->interp_path, &pp->version))
		version_from_name(pp->exe, &pp->version);
}

/* PEP 768's opt-out covers every external debugger, pydi's ptrace path
 * included: the owner said no. */
static void check_remote_debug(struct pyproc *pp)
{
	uint64_t interp;
	int32_t enabled;

	if (pp->offsets.interp_remote_debug == PY_OFF_NONE)
		return;
	if (mem_read_u64(&pp->reader,
			 pp->runtime_addr + pp->offsets.runtime_interpreters_head, &interp) ||
	    mem_read_i32(&pp->reader, interp + pp->offsets.interp_remote_debug, &enabled))
		return;
	if (!enabled)
		not_instrumentable(pp, "remote debugging is disabled in the target (-X disable-remote-debug or PYTHON_DISABLE_REMOTE_DEBUG)");
}

static void read_offsets(struct pyproc *pp)
{
	unsigned char raw[PY_DEBUG_OFFSETS_MAX];
	const struct py_version *v = &pp->version;
	int err;

	if (!pp->version_known) {
		not_instrumentable(pp, "Python %d.%d is not supported (pydi supports 3.11 to 3.14)",
				   v->major, v->minor);
		return;
	}
	if (py_offsets_have_table(v)) {
		py_offsets_from_table(v, &pp->offsets);
		pp->offsets_source = PY_OFFSETS_TABLE;
		pp->untested = py_offsets_untested(v);
		return;
	}
	if (v->major != 3 || v->minor < 13) {
		not_instrumentable(pp, "Python %d.%d is not supported (pydi supports 3.11 to 3.14)",
				   v->major, v->minor);
		return;
	}
	err = mem_read(&pp->reader, pp->runtime_addr, raw, sizeof(raw));
	if (!err)
		err = py_offsets_from_debug(v, raw, sizeof(raw), &pp->offsets,
					    &pp->free_threaded);
	if (err == -ENOTSUP) {
		not_instrumentable(pp, "Python %d.%d is not supported (pydi supports 3.11 to 3.14)",
				   v->major, v->minor);
		return;
	}
	if (err) {
		not_instrumentable(pp, "_Py_DebugOffsets at 0x%" PRIx64 " unreadable or invalid: %s",
				   pp->runtime_addr, strerror(-err));
		return;
	}
	pp->offsets_source = PY_OFFSETS_DEBUG_OFFSETS;
	if (pp->free_threaded)
		not_instrumentable(pp, "free-threaded CPython builds are not supported");
	check_remote_debug(pp);
}

/*
 * At most max bytes from the start of a file. The environment of a process
 * can be as large as its stack limit allows (tens of MiB); its first MiB
 * is what we read, and the variable cut at the end is ignored.
 */
static int read_prefix(const char *path, size_t max, char **out, size_t *len)
{
	size_t cap = 64 << 10, used = 0;
	char *buf = NULL, *grown;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW), err = 0;

	if (fd < 0)
		return -errno;
	for (;;) {
		if (!buf || used == cap) {
			if (buf && cap >= max)
				break;
			cap = !buf ? cap : cap * 2 > max ? max : cap * 2;
			grown = realloc(buf, cap + 1);
			if (!grown) {
				err = -ENOMEM;
				break;
			}
			buf = grown;
		}
		n = read(fd, buf + used, cap - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			err = -errno;
		if (n <= 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	if (err) {
		free(buf);
		return err;
	}
	buf[used] = '\0';
	*out = buf;
	*len = used;
	return 0;
}

int service_identity_read(pid_t pid, struct service_identity *id)
{
	char path[64], *text = NULL;
	size_t len = 0;
	int ret;

	memset(id, 0, sizeof(*id));
	snprintf(path, sizeof(path), "/proc/%d/environ", pid);
	ret = read_prefix(path, ENVIRON_MAX_BYTES, &text, &len);
	if (ret)
		return ret;
	service_identity_parse(text, len, id);
	free(text);
	return 0;
}

static void read_identity(struct pyproc *pp)
{
	service_identity_read(pp->pid, &pp->identity);
	if (pp->identity.adot_debugger_enabled)
		not_instrumentable(pp, "ADOT's in-process debugger is enabled (OTEL_AWS_DYNAMIC_INSTRUMENTATION_ENABLED=true)");
}

static bool other_namespace(pid_t pid, const char *ns)
{
	char mine[64], theirs[64];
	struct stat a, b;

	snprintf(mine, sizeof(mine), "/proc/self/ns/%s", ns);
	snprintf(theirs, sizeof(theirs), "/proc/%d/ns/%s", pid, ns);
	if (stat(mine, &a) || stat(theirs, &b))
		return false;
	return a.st_ino != b.st_ino || a.st_dev != b.st_dev;
}

/* NSpid lists the pid in each nested namespace; the last is its own. */
static pid_t innermost_pid(const char *nspid, pid_t fallback)
{
	long last = fallback;
	char *end;

	while (nspid && *nspid && *nspid != '\n') {
		long v = strtol(nspid, &end, 10);

		if (end == nspid)
			break;
		last = v;
		nspid = end;
		while (*nspid == ' ' || *nspid == '\t')
			nspid++;
	}
	return (pid_t)last;
}

static bool have_cap(int cap)
{
	char *text;
	size_t len;
	bool has = false;

	if (read_file_bounded("/proc/self/status", STATUS_MAX_BYTES, &text, &len))
		return false;
	const char *eff = status_field(text, "CapEff");

	if (eff)
		has = (strtoull(eff, NULL, 16) >> cap) & 1;
	free(text);
	return has;
}

static void check_ptrace(struct pyproc *pp, const char *status)
{
	const char *tracer = status_field(status, "TracerPid");
	const char *uid = status_field(status, "Uid");
	bool cap_ptrace = have_cap(CAP_SYS_PTRACE_BIT);
	char *scope_text;
	size_t len;
	int scope = 0;

	if (read_file_bounded("/proc/sys/kernel/yama/ptrace_scope", 64,
			      &scope_text, &len) == 0) {
		scope = atoi(scope_text);
		free(scope_text);
	}
	if (scope >= 3) {
		not_instrumentable(pp, "ptrace is disabled (kernel.yama.ptrace_scope=3)");
		return;
	}
	/* Yama 1 lets only ancestors trace without the capability, and pydi
	 * is never the target's ancestor. */
	if (!cap_ptrace && (scope >= 1 || !uid ||
			    (uid_t)strtoul(uid, NULL, 10) != geteuid())) {
		not_instrumentable(pp, "ptrace not allowed: needs CAP_SYS_PTRACE%s",
				   scope == 2 ? " (kernel.yama.ptrace_scope=2)" :
				   scope == 1 ? " (kernel.yama.ptrace_scope=1)" : "");
		return;
	}
	if (tracer && atoi(tracer) != 0)
		not_instrumentable(pp, "already traced by pid %d (a debugger is attached)",
				   atoi(tracer));
}

static void check_libc(struct pyproc *pp, const struct proc_maps *maps)
{
	for (size_t i = 0; i < maps->count; i++) {
		const char *name = base_name(maps->entries[i].path);

		if (strncmp(name, "ld-musl", 7) == 0 ||
		    strncmp(name, "libc.musl", 9) == 0) {
			not_instrumentable(pp, "musl libc target (e.g. Alpine): pydi's glibc helper cannot load there");
			return;
		}
	}
}

static void read_status(struct pyproc *pp)
{
	char path[64], *text;
	size_t len;

	pp->other_mnt_ns = other_namespace(pp->pid, "mnt");
	pp->other_pid_ns = other_namespace(pp->pid, "pid");
	pp->ns_pid = pp->pid;
	snprintf(path, sizeof(path), "/proc/%d/status", pp->pid);
	if (read_file_bounded(path, STATUS_MAX_BYTES, &text, &len))
		return;
	pp->ns_pid = innermost_pid(status_field(text, "NSpid"), pp->pid);
	check_ptrace(pp, text);
	free(text);
}

int pyproc_open(pid_t pid, struct pyproc *pp, char *err, size_t err_len)
{
	struct elf_image *img = NULL;
	struct proc_maps maps = { 0 };
	char path[64];
	ssize_t n;
	int ret;

	memset(pp, 0, sizeof(*pp));
	pp->pid = pid;
	pp->instrumentable = true;
	proc_mem_init(&pp->mem, pid);
	pp->reader = proc_mem_reader(&pp->mem);

	if (proc_read_start_time(pid, &pp->start_time)) {
		set_err(err, err_len, "pid %d: no such process", pid);
		return -ESRCH;
	}
	snprintf(path, sizeof(path), "/proc/%d/exe", pid);
	n = readlink(path, pp->exe, sizeof(pp->exe) - 1);
	if (n < 0) {
		ret = errno == ENOENT ? -ENOEXEC : -errno;
		set_err(err, err_len, ret == -ENOEXEC ?
			"pid %d is not a CPython process (no executable: kernel thread or zombie)" :
			"pid %d: reading its executable: %s", pid, strerror(-ret));
		return ret;
	}
	pp->exe[n] = '\0';

	ret = proc_maps_read(pid, &maps);
	if (ret) {
		set_err(err, err_len, "pid %d: reading /proc/%d/maps: %s", pid,
			pid, strerror(-ret));
		return ret == -ENOENT ? -ESRCH : ret;
	}
	ret = find_interpreter(pp, &maps, &img);
	if (ret == -ENOEXEC) {
		set_err(err, err_len, "pid %d (%s) is not a CPython process: neither its binary nor a mapped libpython exports _PyRuntime",
			pid, base_name(pp->exe));
		goto out;
	}
	if (ret) {
		set_err(err, err_len, "pid %d: opening its mapped files through /proc/%d/map_files: %s",
			pid, pid, strerror(-ret));
		goto out;
	}

	read_version(pp, img);
	read_offsets(pp);
	read_identity(pp);
	read_status(pp);
	check_libc(pp, &maps);
	ret = 0;
out:
	elf_image_close(img);
	proc_maps_free(&maps);
	return ret;
}

int pyproc_open_with_offsets(pid_t pid, struct pyproc *pp, char *err,
			     size_t err_len)
{
	int ret = pyproc_open(pid, pp, err, err_len);

	if (!ret && pp->offsets_source == PY_OFFSETS_NONE) {
		set_err(err, err_len, "pid %d: no struct offsets: %s", pid, pp->reason);
		ret = -ENOTSUP;
	}
	return ret;
}

void pyproc_close(struct pyproc *pp)
{
	proc_mem_close(&pp->mem);
}
