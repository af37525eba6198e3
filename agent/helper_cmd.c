// SPDX-License-Identifier: MIT
/*
 * pydi inject PID | resolve -p PID TARGET | revert PID: load the helper,
 * ask it to resolve a probe target, undo everything it did.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "inject.h"
#include "main.h"
#include "pyproc.h"

#define COMMAND_TIMEOUT_MS 10000

/* "PID" or "-p PID" / "--pid PID"; remaining args in *rest. */
static int parse_pid_args(int argc, char **argv, int *pid, int *rest_argc,
			  char ***rest_argv)
{
	static const struct option options[] = {
		{ "pid", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	*pid = 0;
	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc + 1, argv - 1, "+p:", options, NULL)) >= 0) {
		if (opt != 'p' || parse_pid(optarg, pid))
			return -EINVAL;
	}
	argc -= optind - 1;
	argv += optind - 1;
	if (!*pid) {
		if (argc < 1 || parse_pid(argv[0], pid))
			return -EINVAL;
		argc--;
		argv++;
	}
	*rest_argc = argc;
	*rest_argv = argv;
	return 0;
}

/*
 * The kernel answers EACCES/EPERM on /proc/PID files and ptrace when we may
 * not trace the target: say what fixes it, unless the message already does.
 */
static const char *access_hint(int ret, const char *err)
{
	if ((ret != -EACCES && ret != -EPERM) || strstr(err, "CAP_SYS_PTRACE"))
		return "";
	return " (pydi needs CAP_SYS_PTRACE over the target: run it as root)";
}

/* Open the process and make sure the helper is in; prints the error. */
static int connect_helper(int pid, struct pyproc *pp, struct helper_client *hc,
			  struct inject_result *res)
{
	char err[512];
	int ret;

	/* The callers close hc whatever happens, also when pyproc_open fails. */
	memset(hc, 0, sizeof(*hc));
	hc->pidfd = hc->wake_fd = hc->done_fd = -1;
	ret = pyproc_open(pid, pp, err, sizeof(err));
	if (!ret)
		ret = inject_helper(pp, hc, res, err, sizeof(err));
	if (ret) {
		p_err("%s%s", err, access_hint(ret, err));
		return EXIT_CANNOT_ATTACH;
	}
	return 0;
}

/* Run one command and parse its JSON reply. */
static json_t *run_command(struct helper_client *hc, json_t *cmd)
{
	char *text = json_dumps(cmd, JSON_COMPACT), *reply = NULL;
	json_error_t jerr;
	json_t *parsed = NULL;
	int ret;

	if (!text)
		return NULL;
	ret = helper_command(hc, text, &reply, COMMAND_TIMEOUT_MS);
	free(text);
	if (ret) {
		p_err("pid %d: helper command failed: %s%s", hc->pid, strerror(-ret),
		      ret == -ETIMEDOUT ? " (the target may be holding the GIL in C code)" : "");
		return NULL;
	}
	parsed = json_loads(reply, 0, &jerr);
	if (!parsed)
		p_err("pid %d: helper sent invalid JSON: %s", hc->pid, jerr.text);
	free(reply);
	return parsed;
}

static void print_reply(json_t *reply)
{
	if (json_output) {
		json_print(reply);
		return;
	}
	/* Human output: the reply, indented, is the most honest summary. */
	json_dumpf(reply, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	fputc('\n', stdout);
}

/* Connect (injecting if needed), run cmd, print the reply: exit code.
 * decorate, if set, adds fields to the reply before it is printed. */
static int connect_and_run(int pid, json_t *cmd,
			   void (*decorate)(json_t *, const struct inject_result *))
{
	struct inject_result res;
	struct helper_client hc;
	struct pyproc pp;
	json_t *reply;
	int ret;

	ret = connect_helper(pid, &pp, &hc, &res);
	if (!ret) {
		reply = run_command(&hc, cmd);
		if (!reply) {
			ret = EXIT_CANNOT_ATTACH;
		} else {
			if (decorate)
				decorate(reply, &res);
			print_reply(reply);
			ret = json_is_true(json_object_get(reply, "ok")) ? EXIT_DONE :
									 EXIT_PROBE_ERROR;
			json_decref(reply);
		}
	}
	json_decref(cmd);
	helper_close(&hc);
	pyproc_close(&pp);
	return ret;
}

static void add_inject_facts(json_t *reply, const struct inject_result *res)
{
	json_object_set_new(reply, "inject_path", json_string(inject_path_name(res->path)));
	json_object_set_new(reply, "inject_thread", json_integer(res->tid));
	json_object_set_new(reply, "inject_ms", json_real(res->elapsed_ms));
}

static int do_inject(int argc, char **argv)
{
	char **rest;
	int pid, nrest;

	if (parse_pid_args(argc, argv, &pid, &nrest, &rest) || nrest) {
		p_err("usage: %s inject { PID | -p PID }", bin_name);
		return EXIT_USAGE;
	}
	return connect_and_run(pid, json_pack("{s:s}", "cmd", "hello"), add_inject_facts);
}

static int do_resolve(int argc, char **argv)
{
	char **rest;
	int pid, nrest;

	if (parse_pid_args(argc, argv, &pid, &nrest, &rest) || nrest != 1) {
		p_err("usage: %s resolve -p PID TARGET", bin_name);
		return EXIT_USAGE;
	}
	return connect_and_run(pid, json_pack("{s:s,s:s}", "cmd", "resolve", "target",
					      rest[0]), NULL);
}

static int do_revert(int argc, char **argv)
{
	struct helper_client hc;
	json_t *cmd, *reply;
	char **rest;
	int pid, nrest, ret;

	if (parse_pid_args(argc, argv, &pid, &nrest, &rest) || nrest) {
		p_err("usage: %s revert { PID | -p PID }", bin_name);
		return EXIT_USAGE;
	}
	ret = helper_find(pid, &hc);
	if (ret == -ENOENT) {
		/* Nothing was ever loaded: nothing to revert. */
		reply = json_pack("{s:b,s:i,s:s}", "ok", 1, "reverted", 0,
				  "message", "no pydi helper in this process");
		print_reply(reply);
		json_decref(reply);
		return EXIT_DONE;
	}
	if (ret) {
		p_err("pid %d: %s%s", pid, ret == -ESRCH ? "no such process" : strerror(-ret),
		      access_hint(ret, ""));
		return EXIT_CANNOT_ATTACH;
	}
	cmd = json_pack("{s:s}", "cmd", "revert-all");
	reply = run_command(&hc, cmd);
	json_decref(cmd);
	helper_close(&hc);
	if (!reply)
		return EXIT_CANNOT_ATTACH;
	print_reply(reply);
	json_decref(reply);
	return EXIT_DONE;
}

int do_inject_cmd(int argc, char **argv)
{
	return do_inject(argc, argv);
}

int do_resolve_cmd(int argc, char **argv)
{
	return do_resolve(argc, argv);
}

int do_revert_cmd(int argc, char **argv)
{
	return do_revert(argc, argv);
}
