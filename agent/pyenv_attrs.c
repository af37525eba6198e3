// SPDX-License-Identifier: MIT
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "pyenv_attrs.h"

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Copy [s, s+len) percent-decoded and trimmed into out (always terminated).
 * Control characters become '?': these names come from a process we do not
 * trust and go into our log lines (a newline would forge one).
 */
static void copy_decoded(const char *s, size_t len, char *out, size_t out_len)
{
	size_t o = 0;

	while (len && isspace((unsigned char)*s)) {
		s++;
		len--;
	}
	while (len && isspace((unsigned char)s[len - 1]))
		len--;
	for (size_t i = 0; i < len && o + 1 < out_len; i++) {
		if (s[i] == '%' && i + 2 < len) {
			int hi = hex_value(s[i + 1]);
			int lo = hex_value(s[i + 2]);

			if (hi >= 0 && lo >= 0) {
				out[o++] = (char)(hi << 4 | lo);
				i += 2;
				continue;
			}
		}
		out[o++] = s[i];
	}
	out[o] = '\0';
	for (size_t i = 0; i < o; i++)
		if ((unsigned char)out[i] < 0x20 || out[i] == 0x7f)
			out[i] = '?';
}

bool resource_attr_get(const char *attrs, const char *key, char *out,
		       size_t out_len)
{
	size_t key_len = strlen(key);
	const char *p = attrs;

	while (p && *p) {
		const char *end = strchr(p, ',');
		const char *eq;
		size_t item_len = end ? (size_t)(end - p) : strlen(p);
		const char *k = p;
		size_t k_len;

		eq = memchr(p, '=', item_len);
		if (eq) {
			while (k < eq && isspace((unsigned char)*k))
				k++;
			k_len = (size_t)(eq - k);
			while (k_len && isspace((unsigned char)k[k_len - 1]))
				k_len--;
			if (k_len == key_len && memcmp(k, key, key_len) == 0) {
				copy_decoded(eq + 1, item_len - (size_t)(eq + 1 - p),
					     out, out_len);
				return true;
			}
		}
		p = end ? end + 1 : NULL;
	}
	return false;
}

static void set_if_empty(char *dst, const char *value)
{
	if (!dst[0])
		snprintf(dst, SERVICE_ATTR_MAX, "%s", value);
}

void service_identity_parse(const char *environ, size_t len,
			    struct service_identity *id)
{
	const char *resource_attrs = NULL;
	size_t pos = 0;

	memset(id, 0, sizeof(*id));
	while (pos < len) {
		const char *var = environ + pos;
		size_t var_len = strnlen(var, len - pos);

		pos += var_len + 1;
		if (pos > len)
			break;	/* not terminated: ignore the tail */
		if (strncmp(var, "OTEL_SERVICE_NAME=", 18) == 0)
			copy_decoded(var + 18, var_len - 18, id->service_name,
				     sizeof(id->service_name));
		else if (strncmp(var, "OTEL_RESOURCE_ATTRIBUTES=", 25) == 0) {
			resource_attrs = var + 25;
			snprintf(id->resource_attrs, sizeof(id->resource_attrs), "%.*s",
				 (int)(var_len - 25), resource_attrs);
		}
		else if (strncmp(var, "OTEL_AWS_DYNAMIC_INSTRUMENTATION_ENABLED=", 41) == 0)
			id->adot_debugger_enabled = strcasecmp(var + 41, "true") == 0;
	}
	if (resource_attrs) {
		char value[SERVICE_ATTR_MAX];

		if (resource_attr_get(resource_attrs, "service.name", value,
				      sizeof(value)))
			set_if_empty(id->service_name, value);
		if (resource_attr_get(resource_attrs, "deployment.environment.name",
				      value, sizeof(value)))
			set_if_empty(id->environment, value);
		if (resource_attr_get(resource_attrs, "deployment.environment",
				      value, sizeof(value)))
			set_if_empty(id->environment, value);
	}
}

void resource_attr_foreach(const char *attrs,
			   void (*fn)(void *ctx, const char *key, const char *value),
			   void *ctx)
{
	const char *p = attrs;

	while (p && *p) {
		const char *end = strchr(p, ',');
		size_t item_len = end ? (size_t)(end - p) : strlen(p);
		const char *eq = memchr(p, '=', item_len);

		if (eq) {
			char key[SERVICE_ATTR_MAX], value[SERVICE_ATTR_MAX];

			copy_decoded(p, (size_t)(eq - p), key, sizeof(key));
			copy_decoded(eq + 1, item_len - (size_t)(eq + 1 - p), value,
				     sizeof(value));
			if (key[0])
				fn(ctx, key, value);
		}
		p = end ? end + 1 : NULL;
	}
}
