// SPDX-License-Identifier: MIT
/*
 * /proc/PID/environ is the target's own: any bytes. The same input also
 * goes to resource_attr_get as an OTEL_RESOURCE_ATTRIBUTES value, with a
 * key taken from its first line.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pyenv_attrs.h"

static const char *const keys[] = {
	"service.name", "deployment.environment.name",
	"deployment.environment", "", "=", "%",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct service_identity id;
	char out[SERVICE_ATTR_MAX], tiny[2], *attrs;

	service_identity_parse((const char *)data, size, &id);
	if (strnlen(id.service_name, sizeof(id.service_name)) ==
		    sizeof(id.service_name) ||
	    strnlen(id.environment, sizeof(id.environment)) ==
		    sizeof(id.environment))
		abort();	/* must stay NUL-terminated */

	attrs = malloc(size + 1);
	if (!attrs)
		return 0;
	memcpy(attrs, data, size);
	attrs[size] = '\0';
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (resource_attr_get(attrs, keys[i], out, sizeof(out)) &&
		    strnlen(out, sizeof(out)) == sizeof(out))
			abort();
		resource_attr_get(attrs, keys[i], tiny, sizeof(tiny));
	}
	/* The key itself from the input: up to the first newline. */
	char *nl = strchr(attrs, '\n');
	if (nl) {
		*nl = '\0';
		resource_attr_get(nl + 1, attrs, out, sizeof(out));
	}
	free(attrs);
	return 0;
}
