// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pyobj.h"

/* PyASCIIObject.state bit fields, the same from 3.11 to 3.14. */
#define UNICODE_KIND(state)	(((state) >> 2) & 7)
#define UNICODE_COMPACT(state)	(((state) >> 5) & 1)
#define UNICODE_ASCII(state)	(((state) >> 6) & 1)

size_t utf8_encode(uint32_t cp, char *buf)
{
	if (cp >= 0xd800 && cp <= 0xdfff)
		cp = 0xfffd;	/* lone surrogate: not encodable */
	if (cp < 0x80) {
		buf[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		buf[0] = (char)(0xc0 | cp >> 6);
		buf[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		buf[0] = (char)(0xe0 | cp >> 12);
		buf[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		buf[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	if (cp > 0x10ffff)
		cp = 0xfffd;
	if (cp < 0x10000)
		return utf8_encode(cp, buf);
	buf[0] = (char)(0xf0 | cp >> 18);
	buf[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	buf[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	buf[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

int pyobj_read_str(const struct mem_reader *mr, const struct py_offsets *off,
		   uint64_t addr, size_t max_chars, char **out)
{
	uint64_t length, data_addr;
	uint32_t state;
	unsigned int kind;
	uint8_t *raw = NULL;
	char *utf8;
	int err;

	if ((err = mem_read_u64(mr, addr + off->unicode_length, &length)) ||
	    (err = mem_read_u32(mr, addr + off->unicode_state, &state)))
		return err;
	kind = UNICODE_KIND(state);
	if ((kind != 1 && kind != 2 && kind != 4) || !UNICODE_COMPACT(state))
		return -EINVAL;
	if (length > max_chars)
		return -E2BIG;
	data_addr = addr + (UNICODE_ASCII(state) ? off->unicode_ascii_size :
				off->unicode_compact_size);
	if (length) {
		raw = malloc(length * kind);
		if (!raw)
			return -ENOMEM;
		err = mem_read(mr, data_addr, raw, length * kind);
		if (err) {
			free(raw);
			return err;
		}
	}
	utf8 = ucs_to_utf8(raw, length, kind);
	free(raw);
	if (!utf8)
		return -ENOMEM;
	*out = utf8;
	return 0;
}

char *ucs_to_utf8(const uint8_t *data, size_t n, unsigned int kind)
{
	char *out = malloc(n * 4 + 1);
	size_t o = 0;

	if (!out)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		uint32_t cp;

		if (kind == 1) {
			cp = data[i];
		} else if (kind == 2) {
			uint16_t u;

			memcpy(&u, data + i * 2, 2);
			cp = u;
		} else {
			memcpy(&cp, data + i * 4, 4);
		}
		o += utf8_encode(cp, out + o);
	}
	out[o] = '\0';
	return out;
}

int pyobj_read_bytes(const struct mem_reader *mr, const struct py_offsets *off,
		     uint64_t addr, size_t max_len, uint8_t **out, size_t *len)
{
	uint64_t size;
	uint8_t *buf;
	int err;

	err = mem_read_u64(mr, addr + off->bytes_size, &size);
	if (err)
		return err;
	if ((int64_t)size < 0)
		return -EINVAL;
	if (size > max_len)
		return -E2BIG;
	buf = malloc(size ? size : 1);
	if (!buf)
		return -ENOMEM;
	err = mem_read(mr, addr + off->bytes_sval, buf, size);
	if (err) {
		free(buf);
		return err;
	}
	*out = buf;
	*len = size;
	return 0;
}

int pyobj_read_tuple(const struct mem_reader *mr, const struct py_offsets *off,
		     uint64_t addr, size_t max_items, uint64_t **items,
		     size_t *count)
{
	uint64_t size;
	uint64_t *buf;
	int err;

	err = mem_read_u64(mr, addr + off->tuple_size, &size);
	if (err)
		return err;
	if ((int64_t)size < 0)
		return -EINVAL;
	if (size > max_items)
		return -E2BIG;
	buf = malloc((size ? size : 1) * sizeof(*buf));
	if (!buf)
		return -ENOMEM;
	err = mem_read(mr, addr + off->tuple_item, buf, size * sizeof(*buf));
	if (err) {
		free(buf);
		return err;
	}
	*items = buf;
	*count = size;
	return 0;
}

int pyobj_type_name(const struct mem_reader *mr, const struct py_offsets *off,
		    uint64_t addr, char *buf, size_t len)
{
	uint64_t type, name;
	int err;

	if (len == 0)
		return -EINVAL;
	if ((err = mem_read_u64(mr, addr + off->object_type, &type)) ||
	    (err = mem_read_u64(mr, type + off->type_name, &name)))
		return err;
	/* tp_name may sit near the end of a mapping: read byte-wise
	 * chunks so a short name next to unmapped memory still reads. */
	for (size_t i = 0; i + 1 < len; i++) {
		char c;

		err = mem_read(mr, name + i, &c, 1);
		if (err)
			return err;
		buf[i] = c;
		if (!c)
			return 0;
	}
	buf[len - 1] = '\0';
	return 0;
}
