// SPDX-License-Identifier: MIT
/* pydi proc { list | show PID }: the CPython processes on this host. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "main.h"
#include "py_offsets_json.h"
#include "pyproc.h"

static json_t *hex_addr(uint64_t addr)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "0x%" PRIx64, addr);
	return json_string(buf);
}

static json_t *string_or_null(const char *s)
{
	return s && *s ? json_string(s) : json_null();
}

static void version_string(const struct pyproc *pp, char *buf, size_t len)
{
	const struct py_version *v = &pp->version;

	if (!v->major)
		snprintf(buf, len, "unknown");
	else if (!pp->version_known)
		snprintf(buf, len, "%d.%d", v->major, v->minor);
	else
		snprintf(buf, len, "%d.%d.%d", v->major, v->minor, v->micro);
}

static json_t *pyproc_json(const struct pyproc *pp)
{
	char version[32];

	version_string(pp, version, sizeof(version));
	return json_pack("{s:i, s:s, s:s, s:s, s:s, s:o, s:o, s:s, s:b, s:b, s:b,"
			 " s:o, s:o, s:b, s:b, s:i, s:b, s:o}",
			 "pid", pp->pid,
			 "exe", pp->exe,
			 "version", version,
			 "interpreter_file", pp->interp_path,
			 "interpreter_kind", pp->interp_in_libpython ? "libpython" : "binary",
			 "load_base", hex_addr(pp->interp_load_base),
			 "runtime_address", hex_addr(pp->runtime_addr),
			 "offsets_source", py_offsets_source_name(pp->offsets_source),
			 "offsets_untested", pp->untested,
			 "free_threaded", pp->free_threaded,
			 "usdt", pp->has_usdt,
			 "service_name", string_or_null(pp->identity.service_name),
			 "environment", string_or_null(pp->identity.environment),
			 "other_mount_ns", pp->other_mnt_ns,
			 "other_pid_ns", pp->other_pid_ns,
			 "ns_pid", pp->ns_pid,
			 "instrumentable", pp->instrumentable,
			 "reason", pp->instrumentable ? json_null() : json_string(pp->reason));
}

static void print_show(const struct pyproc *pp)
{
	char version[32];

	version_string(pp, version, sizeof(version));
	printf("pid %d  %s\n", pp->pid, pp->exe);
	printf("\tpython %s%s%s\n", version, pp->untested ? " (untested)" : "",
	       pp->free_threaded ? " (free-threaded)" : "");
	printf("\tinterpreter %s (%s) loaded at 0x%" PRIx64 "\n", pp->interp_path,
	       pp->interp_in_libpython ? "libpython" : "binary",
	       pp->interp_load_base);
	printf("\t_PyRuntime 0x%" PRIx64 "  offsets %s  usdt %s\n",
	       pp->runtime_addr, py_offsets_source_name(pp->offsets_source),
	       pp->has_usdt ? "yes" : "no");
	printf("\tservice %s  environment %s\n",
	       pp->identity.service_name[0] ? pp->identity.service_name : "-",
	       pp->identity.environment[0] ? pp->identity.environment : "-");
	if (pp->other_mnt_ns || pp->other_pid_ns)
		printf("\tnamespaces: %s%s pid %d inside\n",
		       pp->other_mnt_ns ? "own mount " : "",
		       pp->other_pid_ns ? "own pid" : "", pp->ns_pid);
	if (pp->instrumentable)
		printf("\tinstrumentable\n");
	else
		printf("\tnot instrumentable: %s\n", pp->reason);
}

static int do_show(int argc, char **argv)
{
	struct pyproc pp;
	char err[512];
	int pid, ret;

	if (argc != 1) {
		p_err("usage: %s proc show PID", bin_name);
		return EXIT_USAGE;
	}
	if (parse_pid(argv[0], &pid)) {
		p_err("invalid pid '%s'", argv[0]);
		return EXIT_USAGE;
	}
	ret = pyproc_open(pid, &pp, err, sizeof(err));
	if (ret) {
		p_err("%s", err);
		pyproc_close(&pp);
		return EXIT_CANNOT_ATTACH;
	}
	if (json_output) {
		json_t *j = pyproc_json(&pp);

		json_print(j);
		json_decref(j);
	} else {
		print_show(&pp);
	}
	pyproc_close(&pp);
	return EXIT_DONE;
}

/* The struct layouts pydi uses for PID, for debugging and the offsets test. */
static int do_offsets(int argc, char **argv)
{
	struct pyproc pp;
	char err[512];
	json_t *j;
	int pid;

	if (argc != 1 || parse_pid(argv[0], &pid)) {
		p_err("usage: %s proc offsets PID", bin_name);
		return EXIT_USAGE;
	}
	if (pyproc_open_with_offsets(pid, &pp, err, sizeof(err))) {
		p_err("%s", err);
		pyproc_close(&pp);
		return EXIT_CANNOT_ATTACH;
	}
	j = py_offsets_to_json(&pp.offsets);
	json_object_set_new(j, "source", json_string(
		py_offsets_source_name(pp.offsets_source)));
	json_print(j);
	json_decref(j);
	pyproc_close(&pp);
	return EXIT_DONE;
}

static int compare_pids(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* Numeric entries of /proc, sorted. */
static int list_pids(int **pids_out, size_t *count_out)
{
	size_t count = 0, cap = 256;
	int *pids = malloc(cap * sizeof(*pids));
	struct dirent *de;
	DIR *dir;

	if (!pids)
		return -ENOMEM;
	dir = opendir("/proc");
	if (!dir) {
		free(pids);
		return -errno;
	}
	while ((de = readdir(dir))) {
		int pid;

		if (!isdigit((unsigned char)de->d_name[0]) ||
		    parse_pid(de->d_name, &pid))
			continue;
		if (count == cap) {
			int *n = realloc(pids, cap * 2 * sizeof(*pids));

			if (!n)
				break;
			pids = n;
			cap *= 2;
		}
		pids[count++] = pid;
	}
	closedir(dir);
	qsort(pids, count, sizeof(*pids), compare_pids);
	*pids_out = pids;
	*count_out = count;
	return 0;
}

static int do_list(int argc, char **argv)
{
	json_t *list = json_array();
	size_t count = 0;
	int *pids = NULL, ret;

	(void)argv;
	if (argc != 0) {
		p_err("usage: %s proc list", bin_name);
		json_decref(list);
		return EXIT_USAGE;
	}
	ret = list_pids(&pids, &count);
	if (ret) {
		p_err("scanning /proc: %s", strerror(-ret));
		json_decref(list);
		return EXIT_CANNOT_ATTACH;
	}
	if (!json_output)
		printf("%-8s %-8s %-20s %-12s %-6s %s\n", "PID", "PYTHON",
		       "SERVICE", "ENV", "INSTR", "EXE");
	for (size_t i = 0; i < count; i++) {
		struct pyproc pp;
		char err[512], version[32];

		if (pids[i] == getpid())
			continue;
		ret = pyproc_open(pids[i], &pp, err, sizeof(err));
		if (ret) {
			/* Gone or not Python: not worth a line. Anything else
			 * (a permission problem) is worth knowing about. */
			if (verbose && ret != -ENOEXEC && ret != -ESRCH)
				p_info("%s", err);
			pyproc_close(&pp);
			continue;
		}
		if (json_output) {
			json_array_append_new(list, pyproc_json(&pp));
		} else {
			version_string(&pp, version, sizeof(version));
			printf("%-8d %-8s %-20s %-12s %-6s %s\n", pp.pid, version,
			       pp.identity.service_name[0] ? pp.identity.service_name : "-",
			       pp.identity.environment[0] ? pp.identity.environment : "-",
			       pp.instrumentable ? "yes" : "no", pp.exe);
		}
		pyproc_close(&pp);
	}
	free(pids);
	if (json_output)
		json_print(list);
	json_decref(list);
	return EXIT_DONE;
}

static int do_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr,
		"Usage: %s [-j|--pretty] proc { list | show PID | offsets PID | help }\n"
		"\n"
		"       list       every CPython process on this host\n"
		"       show PID   one process: interpreter, version, _PyRuntime,\n"
		"                  offsets source, service identity, namespaces,\n"
		"                  and whether pydi can instrument it (and why not)\n"
		"       offsets PID  the CPython struct offsets pydi uses for it (JSON)\n",
		bin_name);
	return EXIT_DONE;
}

static const struct cmd proc_cmds[] = {
	{ "list",	do_list },
	{ "show",	do_show },
	{ "offsets",	do_offsets },
	{ "help",	do_help },
	{ NULL,		NULL },
};

int do_proc(int argc, char **argv)
{
	return cmd_select(proc_cmds, argc, argv, do_help);
}
