// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "memresolve.h"
#include "pyobj.h"

#define DICT_KEYS_LOG2_INDEX	9
#define DICT_KEYS_KIND		10
#define DICT_KEYS_NENTRIES	24
#define DICT_KEYS_INDICES	32
#define DICT_SCAN_MAX		65536	/* entries: sys.modules can be large */
#define NAME_MAX_CHARS		1024

int memresolve_dict_get(struct pyproc *pp, uint64_t dict_addr, const char *name,
			uint64_t *value)
{
	const struct mem_reader *mr = &pp->reader;
	const struct py_offsets *off = &pp->offsets;
	uint64_t keys, values, nentries, entries, stride, key_at;
	uint8_t log2_index, kind;
	int err;

	if ((err = mem_read_u64(mr, dict_addr + off->dict_keys, &keys)) ||
	    (err = mem_read_u64(mr, dict_addr + off->dict_values, &values)) ||
	    (err = mem_read(mr, keys + DICT_KEYS_LOG2_INDEX, &log2_index, 1)) ||
	    (err = mem_read(mr, keys + DICT_KEYS_KIND, &kind, 1)) ||
	    (err = mem_read_u64(mr, keys + DICT_KEYS_NENTRIES, &nentries)))
		return err;
	if (log2_index > 32 || nentries > DICT_SCAN_MAX)
		return -EINVAL;
	entries = keys + DICT_KEYS_INDICES + (1ull << log2_index);
	stride = kind == 0 ? 24 : 16;
	key_at = kind == 0 ? 8 : 0;
	for (uint64_t i = 0; i < nentries; i++) {
		uint64_t key;
		char *text;
		int match;

		if (mem_read_u64(mr, entries + i * stride + key_at, &key) || !key)
			continue;
		if (pyobj_read_str(mr, off, key, NAME_MAX_CHARS, &text))
			continue;
		match = strcmp(text, name) == 0;
		free(text);
		if (!match)
			continue;
		if (values)
			return mem_read_u64(mr, values + off->dict_values_items + 8 * i, value);
		return mem_read_u64(mr, entries + i * stride + key_at + 8, value);
	}
	return -ENOENT;
}

static int modules_dict(struct pyproc *pp, uint64_t *dict)
{
	uint64_t interp;
	int err = mem_read_u64(&pp->reader,
			       pp->runtime_addr + pp->offsets.runtime_interpreters_head,
			       &interp);

	return err ? err : mem_read_u64(&pp->reader, interp + pp->offsets.interp_modules, dict);
}

/* A script run as `python app.py` is __main__; it answers to "app" too. */
static int main_module_named(struct pyproc *pp, uint64_t modules,
			     const char *module, uint64_t *mod)
{
	uint64_t main_mod, dict, file;
	char *path, *base, *dot;
	int ret;

	if (memresolve_dict_get(pp, modules, "__main__", &main_mod) ||
	    mem_read_u64(&pp->reader, main_mod + pp->offsets.module_dict, &dict) ||
	    memresolve_dict_get(pp, dict, "__file__", &file) ||
	    pyobj_read_str(&pp->reader, &pp->offsets, file, NAME_MAX_CHARS, &path))
		return -ENOENT;
	base = strrchr(path, '/');
	base = base ? base + 1 : path;
	dot = strrchr(base, '.');
	if (dot)
		*dot = '\0';
	ret = strcmp(base, module) == 0 ? 0 : -ENOENT;
	free(path);
	if (!ret)
		*mod = main_mod;
	return ret;
}

int memresolve_code(struct pyproc *pp, const char *target, uint64_t *code,
		    char *err, size_t err_len)
{
	char module[512], qualname[512], type[PYOBJ_TYPE_NAME_MAX];
	const char *colon = strchr(target, ':');
	uint64_t modules, mod, dict, obj;
	char *dot;
	int ret;

	if (!colon || colon == target || !colon[1] || strchr(target, '@') ||
	    (size_t)(colon - target) >= sizeof(module) || strlen(colon + 1) >= sizeof(qualname)) {
		snprintf(err, err_len, "--no-inject takes module:qualname (function probes only)");
		return -EINVAL;
	}
	snprintf(module, sizeof(module), "%.*s", (int)(colon - target), target);
	snprintf(qualname, sizeof(qualname), "%s", colon + 1);
	if ((ret = modules_dict(pp, &modules)) ||
	    (memresolve_dict_get(pp, modules, module, &mod) &&
	     main_module_named(pp, modules, module, &mod))) {
		snprintf(err, err_len, "module %s is not loaded in pid %d", module, pp->pid);
		return -ENOENT;
	}
	if ((ret = mem_read_u64(&pp->reader, mod + pp->offsets.module_dict, &dict)))
		return ret;
	dot = strchr(qualname, '.');
	if (dot) {
		*dot = '\0';
		if (memresolve_dict_get(pp, dict, qualname, &obj) ||
		    mem_read_u64(&pp->reader, obj + pp->offsets.type_dict, &dict) || !dict) {
			snprintf(err, err_len, "%s has no class %s", module, qualname);
			return -ENOENT;
		}
		snprintf(qualname, sizeof(qualname), "%s", dot + 1);
	}
	if (memresolve_dict_get(pp, dict, qualname, &obj)) {
		snprintf(err, err_len, "%s not found in %s", colon + 1, module);
		return -ENOENT;
	}
	if (pyobj_type_name(&pp->reader, &pp->offsets, obj, type, sizeof(type)) ||
	    strcmp(type, "function") != 0) {
		snprintf(err, err_len, "%s is a %s, not a Python function", colon + 1, type);
		return -ENOENT;
	}
	return mem_read_u64(&pp->reader, obj + pp->offsets.func_code, code);
}
