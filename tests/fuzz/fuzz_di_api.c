// SPDX-License-Identifier: MIT
/*
 * A list-instrumentation-configurations response comes from the DI API,
 * which the agent does not trust: any bytes. Whatever they are, the parser
 * returns a list of objects or an error with a reason, and leaks nothing.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "di_api.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[256] = "";
	unsigned int sync_interval_s = 7, skipped = 7;
	char *next_token = (char *)"";
	json_t *configs = (json_t *)1, *c;
	bool changed;
	size_t i;
	int ret;

	/* Not NUL-terminated on purpose: the parser must honour len. */
	ret = di_parse_list_response((const char *)data, size, &configs,
				     &changed, &next_token, &sync_interval_s,
				     &skipped, err, sizeof(err));
	if (ret) {
		if (ret != -EINVAL && ret != -ENOMEM)
			abort();
		if (configs || next_token || !err[0])
			abort();	/* nothing handed out, a reason given */
		return 0;
	}
	if (!json_is_array(configs) || sync_interval_s > 86400)
		abort();
	if (next_token && !next_token[0])
		abort();	/* an empty token is the last page */
	json_array_foreach(configs, i, c) {
		json_t *d = json_object_get(c, "ConfigurationData");

		if (!json_is_object(c) || (d && !json_is_object(d)))
			abort();
	}
	json_decref(configs);
	free(next_token);
	return 0;
}
