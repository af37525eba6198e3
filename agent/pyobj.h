/* SPDX-License-Identifier: MIT */
/* Reading simple CPython objects (str, bytes, tuple, type name) from a
 * target. Every read is bounded: the target's memory is hostile input. */
#ifndef PYDI_PYOBJ_H
#define PYDI_PYOBJ_H

#include <stddef.h>
#include <stdint.h>

#include "memread.h"
#include "py_offsets.h"

#define PYOBJ_STR_MAX		(1u << 20)	/* code points */
#define PYOBJ_BYTES_MAX		(16u << 20)
#define PYOBJ_TUPLE_MAX		(1u << 20)
#define PYOBJ_TYPE_NAME_MAX	256

/* A str object as UTF-8 (malloc'd, NUL-terminated). -EINVAL if it is not a
 * well-formed compact str, -E2BIG beyond max_chars. */
int pyobj_read_str(const struct mem_reader *mr, const struct py_offsets *off,
		   uint64_t addr, size_t max_chars, char **out);

/* A bytes object's contents (malloc'd). */
int pyobj_read_bytes(const struct mem_reader *mr, const struct py_offsets *off,
		     uint64_t addr, size_t max_len, uint8_t **out, size_t *len);

/* A tuple's item pointers (malloc'd). */
int pyobj_read_tuple(const struct mem_reader *mr, const struct py_offsets *off,
		     uint64_t addr, size_t max_items, uint64_t **items,
		     size_t *count);

/* tp_name of the object's type, into buf. */
int pyobj_type_name(const struct mem_reader *mr, const struct py_offsets *off,
		    uint64_t addr, char *buf, size_t len);

/* UTF-8 of n code points of PEP 393 data of the given kind (1, 2 or 4
 * bytes per character); malloc'd and NUL-terminated, or NULL. */
char *ucs_to_utf8(const uint8_t *data, size_t n, unsigned int kind);

/* Append code point cp to buf as UTF-8; returns bytes written (1-4). */
size_t utf8_encode(uint32_t cp, char *buf);

#endif /* PYDI_PYOBJ_H */
