// SPDX-License-Identifier: MIT
/*
 * A probe configuration comes from the DI API, a watched directory or the
 * control socket: any JSON. The input is parsed as JSON (any value) and
 * handed to probe_config_parse, and again as a JSON string holding the
 * input (the DI API's ConfigurationData form). What comes out must keep
 * the contract: terminated fields, limits in ADOT's ranges, a PROBE at line
 * 0 with no MaxHits and no expiry, a 16-hex-digit fingerprint.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "probe_config.h"

#define TERMINATED(field) (strnlen(field, sizeof(field)) < sizeof(field))

static void check(const struct probe_config *c)
{
	const struct probe_limits *l = &c->limits;
	char target[2048], tiny[4];
	json_t *attrs;

	if (!TERMINATED(c->id) || !c->id[0] || !TERMINATED(c->name) ||
	    !TERMINATED(c->language) || !TERMINATED(c->module) ||
	    !c->module[0] || !TERMINATED(c->function) || !c->function[0] ||
	    !TERMINATED(c->file_path) || !TERMINATED(c->service) ||
	    !TERMINATED(c->environment) || !TERMINATED(c->fingerprint) ||
	    strspn(c->fingerprint, "0123456789abcdef") != 16)
		abort();
	if (c->line < 0 || c->pid < 0 || c->rate <= 0)
		abort();
	if (c->kind == PROBE_KIND_PROBE &&
	    (c->line || l->max_hits || c->expires_at_ms))
		abort();
	if (c->kind == PROBE_KIND_BREAKPOINT &&
	    (l->max_hits < 1 || l->max_hits > 1000))
		abort();
	if (l->max_string < 1 || l->max_string > 255 || l->max_width < 1 ||
	    l->max_width > 20 || l->max_collection_depth < 1 ||
	    l->max_collection_depth > 5 || l->max_object_depth < 1 ||
	    l->max_object_depth > 5 || l->max_fields < 1 ||
	    l->max_fields > 20 || l->max_frames < 1 || l->max_frames > 20 ||
	    l->max_stack_trace_size < 1 || l->max_stack_trace_size > 1000)
		abort();
	if ((c->capture_arguments && !json_is_array(c->capture_arguments)) ||
	    (c->capture_locals && !json_is_array(c->capture_locals)) ||
	    (c->attribute_filters && !json_is_array(c->attribute_filters)))
		abort();

	probe_config_target(c, target, sizeof(target));
	if (strncmp(target, c->module, strlen(c->module)) ||
	    target[strlen(c->module)] != ':')
		abort();
	probe_config_target(c, tiny, sizeof(tiny));

	/* Match against the filters' own first object, and against nothing. */
	probe_config_matches_attrs(c, NULL);
	attrs = json_array_get(c->attribute_filters, 0);
	if (attrs && !probe_config_matches_attrs(c, attrs)) {
		/* an object with a non-empty key matches itself */
		const char *key;
		json_t *v;

		json_object_foreach(attrs, key, v)
			if (*key)
				abort();
	}
}

static void run(const json_t *j)
{
	struct probe_config c;
	char err[256];

	if (probe_config_parse(j, &c, err, sizeof(err))) {
		if (!err[0] || strnlen(err, sizeof(err)) == sizeof(err))
			abort();	/* a refusal always says why */
		/* the result is freed already; freeing again is harmless */
		probe_config_free(&c);
		return;
	}
	check(&c);
	probe_config_free(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t *j, *s;

	j = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
	if (j) {
		run(j);
		json_decref(j);
	}
	s = json_stringn((const char *)data, size);	/* NULL unless UTF-8 */
	if (s) {
		run(s);
		json_decref(s);
	}
	return 0;
}
