// SPDX-License-Identifier: MIT
/*
 * pydi probe add|list|del: talk to a running agent over its control socket.
 * A probe added here is an ADOT-format configuration like any other; it
 * lives as long as the agent does.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control_sock.h"
#include "main.h"

static const char *socket_path;

static int call(json_t *request, json_t **reply)
{
	char err[512] = "";
	int ret = control_call(socket_path, request, reply, err, sizeof(err));

	json_decref(request);
	if (ret) {
		p_err("%s", err);
		return EXIT_CANNOT_ATTACH;
	}
	if (json_is_false(json_object_get(*reply, "ok"))) {
		p_err("%s", json_string_value(json_object_get(*reply, "error")) ?: "refused");
		json_decref(*reply);
		return EXIT_USAGE;
	}
	return EXIT_DONE;
}

static json_t *read_config_file(const char *path)
{
	json_error_t jerr;
	json_t *j = strcmp(path, "-") == 0 ? json_loadf(stdin, 0, &jerr) :
					     json_load_file(path, 0, &jerr);

	if (!j)
		p_err("%s: line %d: %s", path, jerr.line, jerr.text);
	return j;
}

static json_t *capture_list(const char *csv, const char *what)
{
	return strstr(csv, what) ? json_array() : NULL;
}

/* TARGET = module:qualname[@LINE] -> an ADOT BreakpointConfiguration. */
static json_t *config_from_args(const char *target, const char *id, const char *type,
				const char *capture, long max_hits, const char *service,
				int pid, double rate)
{
	const char *colon = strchr(target, ':'), *at;
	json_t *loc, *cap, *limits, *c;
	char module[256], qualname[512];
	long line = 0;

	if (!colon || colon == target || !colon[1])
		return NULL;
	snprintf(module, sizeof(module), "%.*s", (int)(colon - target), target);
	snprintf(qualname, sizeof(qualname), "%s", colon + 1);
	at = strchr(qualname, '@');
	if (at) {
		char *end;

		line = strtol(at + 1, &end, 10);
		if (*end || line <= 0)
			return NULL;
		qualname[at - qualname] = '\0';
	}
	if (!capture)
		capture = line ? "locals,stack" : "args,return,stack";
	loc = json_pack("{s:{s:s,s:s,s:s,s:i}}", "CodeLocation", "Language", "Python",
			"CodeUnit", module, "MethodName", qualname, "LineNumber", (int)line);
	limits = json_object();
	if (max_hits > 0)
		json_object_set_new(limits, "MaxHits", json_integer(max_hits));
	cap = json_pack("{s:{s:b,s:b,s:o}}", "CodeCapture", "CaptureReturn",
			strstr(capture, "return") != NULL, "CaptureStackTrace",
			strstr(capture, "stack") != NULL, "CaptureLimits", limits);
	if (strstr(capture, "args"))
		json_object_set_new(json_object_get(cap, "CodeCapture"), "CaptureArguments",
				    capture_list(capture, "args"));
	if (strstr(capture, "locals"))
		json_object_set_new(json_object_get(cap, "CodeCapture"), "CaptureLocals",
				    capture_list(capture, "locals"));
	c = json_pack("{s:s,s:o,s:o}", "InstrumentationType", type ? type : "BREAKPOINT",
		      "Location", loc, "CaptureConfiguration", cap);
	if (id)
		json_object_set_new(c, "LocationHash", json_string(id));
	if (service)
		json_object_set_new(c, "Service", json_string(service));
	if (pid)
		json_object_set_new(c, "Pid", json_integer(pid));
	if (rate >= 0)
		json_object_set_new(c, "Rate", json_real(rate));
	return c;
}

static int do_add(int argc, char **argv)
{
	static const struct option options[] = {
		{ "id",		required_argument, NULL, 'i' },
		{ "type",	required_argument, NULL, 'T' },
		{ "capture",	required_argument, NULL, 'c' },
		{ "max-hits",	required_argument, NULL, 'm' },
		{ "service",	required_argument, NULL, 's' },
		{ "pid",	required_argument, NULL, 'p' },
		{ "file",	required_argument, NULL, 'f' },
		{ "rate",	required_argument, NULL, 'r' },
		{ NULL, 0, NULL, 0 },
	};
	const char *id = NULL, *type = NULL, *capture = NULL, *service = NULL, *file = NULL;
	double rate = -1;	/* < 0: the default */
	long max_hits = 0;
	json_t *config, *reply;
	int opt, pid = 0, ret;
	char *end;

	optind = 0;
	opterr = 0;
	while ((opt = getopt_long(argc + 1, argv - 1, "p:", options, NULL)) >= 0) {
		switch (opt) {
		case 'i': id = optarg; break;
		case 'T': type = optarg; break;
		case 'c': capture = optarg; break;
		case 's': service = optarg; break;
		case 'f': file = optarg; break;
		case 'm':
			max_hits = strtol(optarg, &end, 10);
			if (*end || max_hits <= 0)
				goto usage;
			break;
		case 'p':
			if (parse_pid(optarg, &pid))
				goto usage;
			break;
		case 'r':
			rate = strtod(optarg, &end);
			if (*end || end == optarg || rate < 0)
				goto usage;
			break;
		default:
			goto usage;
		}
	}
	argc -= optind - 1;
	argv += optind - 1;
	if (file && argc == 0)
		config = read_config_file(file);
	else if (!file && argc == 1)
		config = config_from_args(argv[0], id, type, capture, max_hits, service, pid,
					  rate);
	else
		goto usage;
	if (!config) {
		if (!file)
			goto usage;
		return EXIT_USAGE;
	}
	ret = call(json_pack("{s:s,s:o}", "cmd", "add", "config", config), &reply);
	if (ret)
		return ret;
	if (json_output)
		json_print(reply);
	else
		printf("added probe %s\n", json_string_value(json_object_get(reply, "id")));
	json_decref(reply);
	return EXIT_DONE;
usage:
	p_err("usage: %s probe add [--id ID] [--type BREAKPOINT|PROBE] [--capture args,locals,return,stack] "
	      "[--max-hits N] [--rate N] [--service NAME] [--pid PID] module:qualname[@LINE] | probe add --file CONFIG.json",
	      bin_name);
	return EXIT_USAGE;
}

static void print_probe(const json_t *p)
{
	const json_t *proc;
	size_t i;

	printf("%s  %s %s  (%s)\n", json_string_value(json_object_get(p, "id")),
	       json_string_value(json_object_get(p, "type")),
	       json_string_value(json_object_get(p, "target")),
	       json_string_value(json_object_get(p, "source")));
	json_array_foreach(json_object_get(p, "processes"), i, proc) {
		const char *cause = json_string_value(json_object_get(proc, "error_cause"));

		printf("    pid %-7lld %-8s %s%s hits %lld snapshots %lld%s%s\n",
		       (long long)json_integer_value(json_object_get(proc, "pid")),
		       json_string_value(json_object_get(proc, "status")),
		       cause ? cause : "", cause ? "" : "",
		       (long long)json_integer_value(json_object_get(proc, "hits")),
		       (long long)json_integer_value(json_object_get(proc, "snapshots")),
		       json_object_get(proc, "message") ? "  " : "",
		       json_string_value(json_object_get(proc, "message")) ?: "");
	}
}

static int do_list(int argc, char **argv)
{
	json_t *reply, *p;
	size_t i;
	int ret;

	(void)argv;
	if (argc) {
		p_err("usage: %s probe list", bin_name);
		return EXIT_USAGE;
	}
	ret = call(json_pack("{s:s}", "cmd", "list"), &reply);
	if (ret)
		return ret;
	if (json_output) {
		json_print(reply);
	} else {
		json_array_foreach(json_object_get(reply, "probes"), i, p)
			print_probe(p);
	}
	json_decref(reply);
	return EXIT_DONE;
}

static int do_del(int argc, char **argv)
{
	json_t *reply;
	int ret;

	if (argc != 1) {
		p_err("usage: %s probe del ID", bin_name);
		return EXIT_USAGE;
	}
	ret = call(json_pack("{s:s,s:s}", "cmd", "del", "id", argv[0]), &reply);
	if (ret)
		return ret;
	if (json_output)
		json_print(reply);
	else
		printf("deleted probe %s\n", argv[0]);
	json_decref(reply);
	return EXIT_DONE;
}

static int probe_help(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	fprintf(stderr,
		"Usage: %s [-j] probe [--socket PATH] { add | list | del } ...\n"
		"       %s probe add [--id ID] [--type BREAKPOINT|PROBE] [--capture args,locals,return,stack]\n"
		"                    [--max-hits N] [--rate N] [--service NAME] [--pid PID]\n"
		"                    module:qualname[@LINE]   (--rate: snapshots a second, 0: no limit)\n"
		"       %s probe add --file CONFIG.json   (an ADOT BreakpointConfiguration)\n"
		"       %s probe list\n"
		"       %s probe del ID\n"
		"\n"
		"       Talks to `pydi agent` over its control socket (root only;\n"
		"       default " CONTROL_SOCKET_DEFAULT ", or $PYDI_CONTROL_SOCKET).\n",
		bin_name, bin_name, bin_name, bin_name, bin_name);
	return EXIT_DONE;
}

int do_probe(int argc, char **argv)
{
	static const struct cmd cmds[] = {
		{ "add",	do_add },
		{ "list",	do_list },
		{ "del",	do_del },
		{ "help",	probe_help },
		{ NULL, NULL },
	};

	socket_path = getenv("PYDI_CONTROL_SOCKET");
	if (!socket_path || !*socket_path)
		socket_path = CONTROL_SOCKET_DEFAULT;
	if (argc >= 2 && strcmp(argv[0], "--socket") == 0) {
		socket_path = argv[1];
		argc -= 2;
		argv += 2;
	}
	if (argc < 1)
		return probe_help(0, NULL);
	return cmd_select(cmds, argc, argv, probe_help);
}
