// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "pycode.h"
#include "pyobj.h"

#define CODE_NAME_MAX		4096	/* characters of a name or path */
#define CODE_LOCALS_MAX		65536
#define CODE_LINETABLE_MAX	(4u << 20)

static int read_int(const struct mem_reader *mr, uint64_t addr, int *out)
{
	int32_t v;
	int err = mem_read_i32(mr, addr, &v);

	if (!err)
		*out = v;
	return err;
}

static int read_str_field(const struct mem_reader *mr,
			  const struct py_offsets *off, uint64_t code,
			  uint64_t field, char **out)
{
	uint64_t str;
	int err = mem_read_u64(mr, code + field, &str);

	return err ? err : pyobj_read_str(mr, off, str, CODE_NAME_MAX, out);
}

static int read_locals(const struct mem_reader *mr,
		       const struct py_offsets *off, struct pycode_info *info)
{
	uint64_t names_addr, kinds_addr, *items = NULL;
	size_t count, nkinds;
	int err;

	if ((err = mem_read_u64(mr, info->addr + off->code_localsplusnames,
				&names_addr)) ||
	    (err = mem_read_u64(mr, info->addr + off->code_localspluskinds,
				&kinds_addr)))
		return err;
	err = pyobj_read_tuple(mr, off, names_addr, CODE_LOCALS_MAX, &items,
			       &count);
	if (err)
		return err;
	err = pyobj_read_bytes(mr, off, kinds_addr, CODE_LOCALS_MAX,
			       &info->localsplus_kinds, &nkinds);
	if (!err && nkinds != count)
		err = -EINVAL;
	if (!err) {
		info->localsplus_names = calloc(count ? count : 1,
						sizeof(*info->localsplus_names));
		if (!info->localsplus_names)
			err = -ENOMEM;
	}
	for (size_t i = 0; !err && i < count; i++) {
		err = pyobj_read_str(mr, off, items[i], CODE_NAME_MAX,
				     &info->localsplus_names[i]);
		if (!err)
			info->nlocalsplus = i + 1;
	}
	free(items);
	return err;
}

static int read_lines(const struct mem_reader *mr,
		      const struct py_offsets *off, struct pycode_info *info)
{
	uint64_t table_addr;
	uint8_t *table;
	size_t len;
	int err;

	err = mem_read_u64(mr, info->addr + off->code_linetable, &table_addr);
	if (err)
		return err;
	err = pyobj_read_bytes(mr, off, table_addr, CODE_LINETABLE_MAX, &table,
			       &len);
	if (err)
		return err;
	err = linetable_decode(table, len, info->first_line, &info->ranges,
			       &info->nranges);
	free(table);
	if (err)
		return err;
	if (off->code_lines_merged)
		linetable_merge(info->ranges, &info->nranges);
	return linetable_lines(info->ranges, info->nranges, &info->lines,
			       &info->nlines);
}

int pycode_read(const struct mem_reader *mr, const struct py_offsets *off,
		uint64_t addr, struct pycode_info *info)
{
	char type_name[PYOBJ_TYPE_NAME_MAX];
	int err;

	memset(info, 0, sizeof(*info));
	info->addr = addr;
	err = pyobj_type_name(mr, off, addr, type_name, sizeof(type_name));
	if (err)
		return err;
	if (strcmp(type_name, "code") != 0)
		return -EINVAL;
	if ((err = read_int(mr, addr + off->code_firstlineno, &info->first_line)) ||
	    (err = read_int(mr, addr + off->code_argcount, &info->argcount)) ||
	    (err = read_int(mr, addr + off->code_posonlyargcount,
			    &info->posonlyargcount)) ||
	    (err = read_int(mr, addr + off->code_kwonlyargcount,
			    &info->kwonlyargcount)) ||
	    (err = read_int(mr, addr + off->code_flags, &info->flags)) ||
	    (err = read_str_field(mr, off, addr, off->code_qualname,
				  &info->qualname)) ||
	    (err = read_str_field(mr, off, addr, off->code_name, &info->name)) ||
	    (err = read_str_field(mr, off, addr, off->code_filename,
				  &info->filename)) ||
	    (err = read_locals(mr, off, info)) ||
	    (err = read_lines(mr, off, info))) {
		pycode_free(info);
		return err;
	}
	return 0;
}

void pycode_free(struct pycode_info *info)
{
	free(info->qualname);
	free(info->name);
	free(info->filename);
	for (size_t i = 0; i < info->nlocalsplus; i++)
		free(info->localsplus_names[i]);
	free(info->localsplus_names);
	free(info->localsplus_kinds);
	free(info->ranges);
	free(info->lines);
	memset(info, 0, sizeof(*info));
}
