/* SPDX-License-Identifier: MIT */
/* Service identity from a process environment, as OpenTelemetry SDKs read it. */
#ifndef PYDI_PYENV_ATTRS_H
#define PYDI_PYENV_ATTRS_H

#include <stdbool.h>
#include <stddef.h>

#define SERVICE_ATTR_MAX 256

struct service_identity {
	char service_name[SERVICE_ATTR_MAX];	/* "" when unset */
	char environment[SERVICE_ATTR_MAX];	/* deployment.environment.name */
	bool adot_debugger_enabled;		/* ADOT's in-process debugger is on */
	char resource_attrs[1024];		/* OTEL_RESOURCE_ATTRIBUTES as set */
};

/*
 * Parse a NUL-separated environment block (as /proc/PID/environ holds it).
 * OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES;
 * deployment.environment.name wins over the older deployment.environment.
 * Values are percent-decoded, as the OTel spec for that variable says.
 */
void service_identity_parse(const char *environ, size_t len,
			    struct service_identity *id);

/* Find KEY's value in an OTEL_RESOURCE_ATTRIBUTES string ("k=v,k2=v2"),
 * percent-decoded into out. True if found. */
bool resource_attr_get(const char *attrs, const char *key, char *out,
		       size_t out_len);

/* Call fn for each "key=value" pair of an OTEL_RESOURCE_ATTRIBUTES string,
 * both percent-decoded; pairs without '=' or with an empty key are skipped. */
void resource_attr_foreach(const char *attrs,
			   void (*fn)(void *ctx, const char *key, const char *value),
			   void *ctx);

#endif /* PYDI_PYENV_ATTRS_H */
