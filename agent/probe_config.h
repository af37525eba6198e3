/* SPDX-License-Identifier: MIT */
/*
 * One probe configuration, as ADOT's debugger reads a BreakpointConfiguration
 * (new union form {Location:{CodeLocation:{…}}, CaptureConfiguration:
 * {CodeCapture:{…}}} and the legacy flat form), with the same defaults and
 * clamping ranges. pydi adds three optional keys for local sources: Service,
 * Environment (which processes a local config is for) and Pid.
 */
#ifndef PYDI_PROBE_CONFIG_H
#define PYDI_PROBE_CONFIG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROBE_ID_MAX 128

enum probe_kind {
	PROBE_KIND_BREAKPOINT = 0,	/* temporary: MaxHits, ExpiresAt */
	PROBE_KIND_PROBE = 1,		/* permanent: function level, no MaxHits */
};

struct probe_limits {
	unsigned int max_hits;		/* per process; 0 = unlimited (PROBE) */
	unsigned int max_string;	/* MaxStringLength */
	unsigned int max_width;		/* MaxCollectionWidth */
	unsigned int max_collection_depth;
	unsigned int max_object_depth;
	unsigned int max_fields;	/* MaxFieldsPerObject */
	unsigned int max_frames;	/* MaxStackFrames */
	unsigned int max_stack_trace_size;
};

struct probe_config {
	char id[PROBE_ID_MAX];		/* LocationHash */
	enum probe_kind kind;
	char name[128];			/* InstrumentationName, may be "" */
	bool language_python;		/* false: report LANGUAGE_MISMATCH */
	char language[32];
	char module[256];		/* CodeUnit */
	char function[512];		/* ClassName.MethodName or MethodName */
	char file_path[1024];		/* FilePath, may be "" */
	int line;			/* 0: function probe (always 0 for PROBE) */
	json_t *capture_arguments;	/* NULL: none; []: all; else the names */
	json_t *capture_locals;		/* same rule */
	bool capture_return;
	bool capture_stack;
	struct probe_limits limits;
	double rate;			/* snapshots per second; 0: unlimited */
	int64_t expires_at_ms;		/* epoch ms; 0: never (always 0 for PROBE) */
	json_t *attribute_filters;	/* array of objects, or NULL */
	/* pydi's local-source keys */
	char service[256];		/* "" = any */
	char environment[256];		/* "" = any */
	int pid;			/* 0 = any */
	/* Identity of the config's content: it changes iff the config does. */
	char fingerprint[17];
};

/*
 * Parse one configuration (an object, or a string holding a JSON object, as
 * the DI API's ConfigurationData may be). Out-of-range limits are clamped,
 * wrong types fall back to defaults (as ADOT). Returns 0, or -EINVAL with a
 * one-line reason in err when the config cannot be used at all (no
 * Location, no CodeUnit/MethodName, negative line). A non-Python Language
 * parses (language_python = false) so that it can be reported.
 */
int probe_config_parse(const json_t *j, struct probe_config *c, char *err,
		       size_t err_len);
void probe_config_free(struct probe_config *c);

/* The helper's target string: "module:function" or "module:function@LINE". */
void probe_config_target(const struct probe_config *c, char *out,
			 size_t out_len);

/* True when the process's resource attributes (an object of strings)
 * satisfy every AttributeFilters entry. */
bool probe_config_matches_attrs(const struct probe_config *c,
				const json_t *resource_attrs);

const char *probe_kind_name(enum probe_kind kind);	/* "BREAKPOINT"/"PROBE" */

#endif /* PYDI_PROBE_CONFIG_H */
