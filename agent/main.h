/* SPDX-License-Identifier: MIT */
/* What every object's verbs share: output mode, errors, dispatch. */
#ifndef PYDI_MAIN_H
#define PYDI_MAIN_H

#include <stdbool.h>
#include <jansson.h>

/* Exit codes (the CLI contract). */
#define EXIT_DONE		0
#define EXIT_USAGE		1
#define EXIT_PROBE_ERROR	2
#define EXIT_CANNOT_ATTACH	3

extern bool json_output;
extern bool pretty_output;
extern bool verbose;
extern const char *bin_name;

struct cmd {
	const char *name;
	int (*func)(int argc, char **argv);
};

/*
 * Run the command named by argv[0] from cmds. Unambiguous prefixes select a
 * command; an ambiguous one is an error that lists the candidates.
 */
int cmd_select(const struct cmd *cmds, int argc, char **argv,
	       int (*help)(int argc, char **argv));

/* True if arg is a prefix of (or equal to) name. */
bool is_prefix(const char *arg, const char *name);

/*
 * Print an error once, at the top: prose on stderr, or {"error": "..."} on
 * stdout in JSON mode so scripts never parse prose.
 */
void p_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Progress and warnings: stderr only, never mixed into JSON. */
void p_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print a JSON value honouring --pretty, followed by a newline. */
void json_print(json_t *value);
/* The same, left in stdout's buffer: the caller flushes (once per batch). */
void json_write(json_t *value);

/* Parse a pid argument; returns 0 and sets *pid, or -EINVAL. */
int parse_pid(const char *arg, int *pid);

int do_proc(int argc, char **argv);
int do_code(int argc, char **argv);
int do_inject_cmd(int argc, char **argv);
int do_resolve_cmd(int argc, char **argv);
int do_revert_cmd(int argc, char **argv);
int do_trace(int argc, char **argv);
int do_agent(int argc, char **argv);
int do_probe(int argc, char **argv);

#endif /* PYDI_MAIN_H */
