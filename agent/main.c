// SPDX-License-Identifier: MIT
/*
 * pydi: eBPF dynamic instrumentation for live CPython processes.
 * Object/verb dispatch in the manner of bpftool.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "main.h"

#define PYDI_VERSION "0.1.0"

bool json_output;
bool pretty_output;
bool verbose;
const char *bin_name;

bool is_prefix(const char *arg, const char *name)
{
	size_t len = strlen(arg);

	return len > 0 && strncmp(arg, name, len) == 0;
}

void p_err(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (json_output) {
		json_t *err = json_pack("{s:s}", "error", msg);

		json_print(err);
		json_decref(err);
	} else {
		fprintf(stderr, "Error: %s\n", msg);
	}
}

void p_info(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * One fwrite per value: json_dumpf() makes a locked fwrite per token, which
 * was two fifths of a saturated trace's time.
 */
void json_write(json_t *value)
{
	static char *buf;
	static size_t cap;
	size_t flags = JSON_ENCODE_ANY | JSON_PRESERVE_ORDER;
	size_t len;

	flags |= pretty_output ? JSON_INDENT(2) : JSON_COMPACT;
	len = json_dumpb(value, buf, cap, flags);
	if (len > cap) {
		size_t want = len + len / 2 + 256;
		char *grown = realloc(buf, want);

		if (!grown) {
			json_dumpf(value, stdout, flags);
			fputc('\n', stdout);
			return;
		}
		buf = grown;
		cap = want;
		len = json_dumpb(value, buf, cap, flags);
	}
	fwrite(buf, 1, len, stdout);
	fputc('\n', stdout);
}

void json_print(json_t *value)
{
	json_write(value);
	fflush(stdout);
}

int parse_pid(const char *arg, int *pid)
{
	char *end;
	long v;

	if (!arg || !*arg)
		return -EINVAL;
	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || *end || v <= 0 || v > INT_MAX)
		return -EINVAL;
	*pid = (int)v;
	return 0;
}

int cmd_select(const struct cmd *cmds, int argc, char **argv,
	       int (*help)(int argc, char **argv))
{
	const struct cmd *match = NULL;
	char candidates[256] = "";
	int nmatch = 0;

	if (argc < 1)
		return help(argc, argv);

	for (const struct cmd *c = cmds; c->name; c++) {
		if (strcmp(argv[0], c->name) == 0)
			return c->func(argc - 1, argv + 1);
		if (is_prefix(argv[0], c->name)) {
			match = c;
			nmatch++;
			if (candidates[0])
				strncat(candidates, ", ",
					sizeof(candidates) - strlen(candidates) - 1);
			strncat(candidates, c->name,
				sizeof(candidates) - strlen(candidates) - 1);
		}
	}
	if (nmatch == 1)
		return match->func(argc - 1, argv + 1);
	if (nmatch > 1) {
		p_err("'%s' is ambiguous: %s", argv[0], candidates);
		return EXIT_USAGE;
	}
	p_err("unknown command '%s' (try '%s help')", argv[0], bin_name);
	return EXIT_USAGE;
}

static int do_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	if (json_output) {
		json_t *j = json_pack("{s:s}", "version", PYDI_VERSION);

		json_print(j);
		json_decref(j);
		return EXIT_DONE;
	}
	fprintf(stderr,
		"Usage: %s [OPTIONS] OBJECT { COMMAND | help }\n"
		"       %s version\n"
		"\n"
		"       OBJECT := { proc | code | trace | agent | probe | inject | resolve | revert }\n"
		"       OPTIONS := { -j|--json | --pretty | -v|--verbose | -h|--help | -V|--version }\n"
		"\n"
		"Examples:\n"
		"       %s proc list                  # CPython processes on this host\n"
		"       %s -j proc show 4242          # one process, as JSON\n"
		"       %s code show -p 4242 0x7f...  # a code object in a live process\n"
		"       %s inject 4242                # load the helper (once)\n"
		"       %s resolve -p 4242 app:handler  # what a probe target names\n"
		"       %s revert 4242                # undo every hook\n"
		"       %s agent --config agent.json  # the host daemon\n"
		"       %s probe list                 # what the agent probes\n",
		bin_name, bin_name, bin_name, bin_name, bin_name, bin_name,
		bin_name, bin_name, bin_name, bin_name);
	return EXIT_DONE;
}

static int do_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	if (json_output) {
		json_t *j = json_pack("{s:s}", "version", PYDI_VERSION);

		json_print(j);
		json_decref(j);
	} else {
		printf("%s v%s\n", bin_name, PYDI_VERSION);
	}
	return EXIT_DONE;
}

static const struct cmd main_cmds[] = {
	{ "help",	do_help },
	{ "version",	do_version },
	{ "proc",	do_proc },
	{ "code",	do_code },
	{ "inject",	do_inject_cmd },
	{ "resolve",	do_resolve_cmd },
	{ "revert",	do_revert_cmd },
	{ "trace",	do_trace },
	{ "agent",	do_agent },
	{ "probe",	do_probe },
	{ NULL,		NULL },
};

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "json",	no_argument, NULL, 'j' },
		{ "pretty",	no_argument, NULL, 'P' },
		{ "verbose",	no_argument, NULL, 'v' },
		{ "help",	no_argument, NULL, 'h' },
		{ "version",	no_argument, NULL, 'V' },
		{ NULL,		0,	     NULL, 0 },
	};
	int opt;

	bin_name = "pydi";
	opterr = 0;	/* report bad options ourselves, as one line */
	setvbuf(stdout, NULL, _IOLBF, 0);

	/* Global options stop at the object: "+" keeps getopt from permuting
	 * the verbs' own options (e.g. "trace -p PID") in front. */
	while ((opt = getopt_long(argc, argv, "+jvhV", options, NULL)) >= 0) {
		switch (opt) {
		case 'j':
			json_output = true;
			break;
		case 'P':
			pretty_output = true;
			json_output = true;
			break;
		case 'v':
			verbose = true;
			break;
		case 'h':
			return do_help(0, NULL);
		case 'V':
			return do_version(0, NULL);
		default:
			p_err("unknown option '%s' (try '%s help')",
			      argv[optind - 1], bin_name);
			return EXIT_USAGE;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1) {
		do_help(0, NULL);
		return EXIT_USAGE;
	}
	return cmd_select(main_cmds, argc, argv, do_help);
}
