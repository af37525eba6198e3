/* SPDX-License-Identifier: MIT */
/* Which names are too sensitive to capture. */
#ifndef PYDI_REDACT_H
#define PYDI_REDACT_H

#include <stdbool.h>
#include <stddef.h>

struct redactor {
	char **extra;		/* configured identifiers, normalized */
	size_t nextra;
	char **types;		/* type names whose values are never captured */
	size_t ntypes;
};

/*
 * True if a variable, field or key named name must be redacted. Matching is
 * case- and separator-insensitive ("API-Key" == "api_key" == "apikey"); long
 * identifiers also match inside a name ("db_password").
 */
bool redact_name(const struct redactor *r, const char *name);
bool redact_type(const struct redactor *r, const char *type_name);

/* Add identifiers / type names (copied). 0 or -ENOMEM. */
int redactor_add_name(struct redactor *r, const char *name);
int redactor_add_type(struct redactor *r, const char *type_name);
void redactor_free(struct redactor *r);

/* Number of built-in identifiers (documentation and tests). */
size_t redact_builtin_count(void);

#endif /* PYDI_REDACT_H */
