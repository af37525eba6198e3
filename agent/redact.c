// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redact.h"

#define NAME_MAX_NORMALIZED 128
#define MEMO_SLOTS 256		/* power of 2 */
#define MEMO_NAME_MAX 40
/* Built-ins this long or longer also match inside a longer name. */
#define CONTAINS_MIN_LEN 6

/* Normalized: lower case, no separators. */
static const char *const builtin[] = {
	"password", "passwd", "pwd", "pass", "passphrase", "secret", "secretkey",
	"clientsecret", "token", "accesstoken", "refreshtoken", "idtoken",
	"authtoken", "bearertoken", "csrftoken", "xsrftoken", "apikey", "apitoken",
	"authorization", "auth", "cookie", "setcookie", "session", "sessionid",
	"sessionkey", "privatekey", "secretaccesskey", "awssecretaccesskey",
	"awssessiontoken", "creditcard", "creditcardnumber", "cardnumber", "ccnumber",
	"cvv", "cvc", "pin", "ssn", "socialsecuritynumber", "signature", "jwt",
	"otp", "mfacode", "encryptionkey", "masterkey", "connectionstring",
	"databaseurl", "dsn", "iban", "bankaccount", "routingnumber", "nationalid",
	"passportnumber", "licensekey", "webhooksecret", "oauthtoken", "xapikey",
};

static void normalize(const char *in, char *out, size_t len)
{
	size_t o = 0;

	for (; *in && o + 1 < len; in++) {
		unsigned char c = (unsigned char)*in;

		if (c == '_' || c == '-' || c == '.' || c == ' ')
			continue;
		out[o++] = (char)tolower(c);
	}
	out[o] = '\0';
}

static bool matches(const char *normalized, const char *entry)
{
	if (strcmp(normalized, entry) == 0)
		return true;
	return strlen(entry) >= CONTAINS_MIN_LEN && strstr(normalized, entry);
}

static bool redact_name_uncached(const struct redactor *r, const char *name)
{
	char n[NAME_MAX_NORMALIZED];

	normalize(name, n, sizeof(n));
	for (size_t i = 0; i < sizeof(builtin) / sizeof(builtin[0]); i++)
		if (matches(n, builtin[i]))
			return true;
	for (size_t i = 0; r && i < r->nextra; i++)
		if (matches(n, r->extra[i]))
			return true;
	return false;
}

/*
 * Any change to any redactor: a memo entry from before it is stale (a freed
 * redactor's address may be reused by the next).
 */
static unsigned long generation;

static void changed(void)
{
	__atomic_add_fetch(&generation, 1, __ATOMIC_RELAXED);
}

/*
 * The same few names come by in every snapshot, and matching one against
 * the whole list was a tenth of a saturated pipeline: answers are memoized
 * per thread.
 */
bool redact_name(const struct redactor *r, const char *name)
{
	static __thread struct {
		const struct redactor *r;
		unsigned long generation;
		bool result;
		char name[MEMO_NAME_MAX];
	} memo[MEMO_SLOTS];
	unsigned long gen = __atomic_load_n(&generation, __ATOMIC_RELAXED);
	uint32_t h = 2166136261u;	/* FNV-1a */
	size_t len;
	bool result;

	if (!name)
		return false;
	for (len = 0; name[len]; len++)
		h = (h ^ (unsigned char)name[len]) * 16777619u;
	if (len >= MEMO_NAME_MAX)
		return redact_name_uncached(r, name);
	h &= MEMO_SLOTS - 1;
	if (memo[h].r == r && memo[h].generation == gen && strcmp(memo[h].name, name) == 0)
		return memo[h].result;
	result = redact_name_uncached(r, name);
	memo[h].r = r;
	memo[h].generation = gen;
	memo[h].result = result;
	memcpy(memo[h].name, name, len + 1);
	return result;
}

bool redact_type(const struct redactor *r, const char *type_name)
{
	for (size_t i = 0; r && type_name && i < r->ntypes; i++)
		if (strcmp(type_name, r->types[i]) == 0)
			return true;
	return false;
}

static int add(char ***list, size_t *n, const char *value, bool normalized)
{
	char **grown = realloc(*list, (*n + 1) * sizeof(**list));
	char buf[NAME_MAX_NORMALIZED];

	if (!grown)
		return -ENOMEM;
	*list = grown;
	if (normalized) {
		normalize(value, buf, sizeof(buf));
		value = buf;
	}
	(*list)[*n] = strdup(value);
	if (!(*list)[*n])
		return -ENOMEM;
	(*n)++;
	changed();
	return 0;
}

int redactor_add_name(struct redactor *r, const char *name)
{
	return add(&r->extra, &r->nextra, name, true);
}

int redactor_add_type(struct redactor *r, const char *type_name)
{
	return add(&r->types, &r->ntypes, type_name, false);
}

void redactor_free(struct redactor *r)
{
	for (size_t i = 0; i < r->nextra; i++)
		free(r->extra[i]);
	for (size_t i = 0; i < r->ntypes; i++)
		free(r->types[i]);
	free(r->extra);
	free(r->types);
	memset(r, 0, sizeof(*r));
	changed();
}

size_t redact_builtin_count(void)
{
	return sizeof(builtin) / sizeof(builtin[0]);
}
