// SPDX-License-Identifier: MIT
/*
 * pydi code show -p PID ADDR... : decode code objects in a live process.
 * The building block for probes and snapshots, exposed so that users (and
 * the line-table cross-check) can see exactly what pydi reads.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "main.h"
#include "pycode.h"
#include "pyproc.h"

static json_t *code_json(const struct pycode_info *ci)
{
	json_t *locals = json_array(), *ranges = json_array();
	json_t *lines = json_array();
	char addr[24];

	for (size_t i = 0; i < ci->nlocalsplus; i++)
		json_array_append_new(locals, json_pack("{s:s,s:i}", "name",
				      ci->localsplus_names[i], "kind",
				      ci->localsplus_kinds[i]));
	for (size_t i = 0; i < ci->nranges; i++) {
		const struct line_range *r = &ci->ranges[i];

		json_array_append_new(ranges, json_pack("[i,i,o]", r->start,
				      r->end, r->line < 0 ? json_null() :
				      json_integer(r->line)));
	}
	for (size_t i = 0; i < ci->nlines; i++)
		json_array_append_new(lines, json_integer(ci->lines[i]));
	snprintf(addr, sizeof(addr), "0x%" PRIx64, ci->addr);
	return json_pack("{s:s,s:s,s:s,s:s,s:i,s:i,s:i,s:i,s:i,s:o,s:o,s:o}",
			 "address", addr, "qualname", ci->qualname, "name",
			 ci->name, "filename", ci->filename, "first_line",
			 ci->first_line, "argcount", ci->argcount,
			 "posonlyargcount", ci->posonlyargcount,
			 "kwonlyargcount", ci->kwonlyargcount, "flags", ci->flags,
			 "localsplus", locals, "co_lines", ranges,
			 "executable_lines", lines);
}

static void print_code(const struct pycode_info *ci)
{
	printf("code 0x%" PRIx64 "  %s  %s:%d\n", ci->addr, ci->qualname,
	       ci->filename, ci->first_line);
	printf("\targs %d (posonly %d, kwonly %d)  flags 0x%x\n", ci->argcount,
	       ci->posonlyargcount, ci->kwonlyargcount, ci->flags);
	printf("\tlocals:");
	for (size_t i = 0; i < ci->nlocalsplus; i++)
		printf(" %s", ci->localsplus_names[i]);
	printf("\n\tlines with code:");
	for (size_t i = 0; i < ci->nlines; i++)
		printf(" %d", ci->lines[i]);
	printf("\n");
}

/* Show one address; errors are per address so a batch goes on. */
static int show_one(struct pyproc *pp, const char *arg)
{
	struct pycode_info ci;
	char *end;
	uint64_t addr;
	int err;

	errno = 0;
	addr = strtoull(arg, &end, 0);
	if (errno || *end || end == arg) {
		p_err("invalid address '%s'", arg);
		return -EINVAL;
	}
	err = pycode_read(&pp->reader, &pp->offsets, addr, &ci);
	if (err) {
		p_err("pid %d: 0x%" PRIx64 " %s", pp->pid, addr,
		      err == -EINVAL ? "is not a code object" : strerror(-err));
		return err;
	}
	if (json_output) {
		json_t *j = code_json(&ci);

		json_print(j);
		json_decref(j);
	} else {
		print_code(&ci);
	}
	pycode_free(&ci);
	return 0;
}

static int show_from_stdin(struct pyproc *pp)
{
	char line[128];
	int failed = 0;

	while (fgets(line, sizeof(line), stdin)) {
		line[strcspn(line, " \t\r\n")] = '\0';
		if (line[0] && show_one(pp, line))
			failed++;
	}
	return failed;
}

static int do_show(int argc, char **argv)
{
	static const struct option options[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	struct pyproc pp;
	char err[512];
	int pid = 0, opt, failed = 0;

	optind = 0;	/* restart getopt for the verb's own options */
	opterr = 0;
	while ((opt = getopt_long(argc + 1, argv - 1, "+p:", options, NULL)) >= 0) {
		if (opt != 'p' || parse_pid(optarg, &pid)) {
			p_err("usage: %s code show -p PID { ADDR... | - }", bin_name);
			return EXIT_USAGE;
		}
	}
	argc -= optind - 1;
	argv += optind - 1;
	if (!pid || argc < 1) {
		p_err("usage: %s code show -p PID { ADDR... | - }", bin_name);
		return EXIT_USAGE;
	}
	if (pyproc_open_with_offsets(pid, &pp, err, sizeof(err))) {
		p_err("%s", err);
		pyproc_close(&pp);
		return EXIT_CANNOT_ATTACH;
	}
	if (argc == 1 && strcmp(argv[0], "-") == 0)
		failed = show_from_stdin(&pp);
	else
		for (int i = 0; i < argc; i++)
			failed += show_one(&pp, argv[i]) != 0;
	pyproc_close(&pp);
	return failed ? EXIT_CANNOT_ATTACH : EXIT_DONE;
}

static int do_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr,
		"Usage: %s [-j|--pretty] code show -p PID { ADDR... | - }\n"
		"\n"
		"       Decode code objects at ADDR (e.g. id(f.__code__)) in a live\n"
		"       process: names, arguments, locals and co_lines(). With '-',\n"
		"       addresses are read one per line from stdin.\n",
		bin_name);
	return EXIT_DONE;
}

static const struct cmd code_cmds[] = {
	{ "show",	do_show },
	{ "help",	do_help },
	{ NULL,		NULL },
};

int do_code(int argc, char **argv)
{
	return cmd_select(code_cmds, argc, argv, do_help);
}
