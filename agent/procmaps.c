// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "procmaps.h"

int read_file_bounded(const char *path, size_t max, char **out, size_t *len)
{
	size_t cap = 4096, used = 0;
	char *buf = NULL, *tmp;
	ssize_t n;
	int fd, err = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	buf = malloc(cap + 1);
	if (!buf) {
		err = -ENOMEM;
		goto out;
	}
	for (;;) {
		if (used == cap) {
			if (cap >= max) {
				err = -EFBIG;
				goto out;
			}
			cap = cap * 2 > max ? max : cap * 2;
			tmp = realloc(buf, cap + 1);
			if (!tmp) {
				err = -ENOMEM;
				goto out;
			}
			buf = tmp;
		}
		n = read(fd, buf + used, cap - used);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			err = -errno;
			goto out;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	buf[used] = '\0';
	*out = buf;
	*len = used;
	buf = NULL;
out:
	free(buf);
	close(fd);
	return err;
}

static int parse_line(const char *line, struct map_entry *e)
{
	unsigned long long start, end, offset, inode;
	unsigned int major, minor;
	char perms[5];
	int path_at = 0;

	if (sscanf(line, "%llx-%llx %4s %llx %x:%x %llu %n", &start, &end,
		   perms, &offset, &major, &minor, &inode, &path_at) < 7)
		return -EINVAL;
	if (end < start)
		return -EINVAL;
	e->start = start;
	e->end = end;
	e->offset = offset;
	e->inode = inode;
	e->dev_major = major;
	e->dev_minor = minor;
	memcpy(e->perms, perms, sizeof(perms));
	e->path = strdup(path_at > 0 ? line + path_at : "");
	return e->path ? 0 : -ENOMEM;
}

int proc_maps_parse(const char *text, size_t len, struct proc_maps *maps)
{
	size_t cap = 0, pos = 0;
	int err;

	maps->entries = NULL;
	maps->count = 0;
	while (pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t line_len = nl ? (size_t)(nl - (text + pos)) : len - pos;
		char line[4096 + 256];

		if (line_len >= sizeof(line)) {
			err = -EINVAL;
			goto fail;
		}
		memcpy(line, text + pos, line_len);
		line[line_len] = '\0';
		pos += line_len + 1;
		if (line_len == 0)
			continue;
		if (maps->count == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			struct map_entry *n = realloc(maps->entries,
						      ncap * sizeof(*n));

			if (!n) {
				err = -ENOMEM;
				goto fail;
			}
			maps->entries = n;
			cap = ncap;
		}
		err = parse_line(line, &maps->entries[maps->count]);
		if (err)
			goto fail;
		maps->count++;
	}
	return 0;
fail:
	proc_maps_free(maps);
	return err;
}

int proc_maps_read(pid_t pid, struct proc_maps *maps)
{
	char path[64], *text;
	size_t len;
	int err;

	snprintf(path, sizeof(path), "/proc/%d/maps", pid);
	err = read_file_bounded(path, PROC_MAPS_MAX_BYTES, &text, &len);
	if (err)
		return err;
	err = proc_maps_parse(text, len, maps);
	free(text);
	return err;
}

void proc_maps_free(struct proc_maps *maps)
{
	for (size_t i = 0; i < maps->count; i++)
		free(maps->entries[i].path);
	free(maps->entries);
	maps->entries = NULL;
	maps->count = 0;
}

const struct map_entry *proc_maps_find(const struct proc_maps *maps,
				       uint64_t addr)
{
	for (size_t i = 0; i < maps->count; i++)
		if (addr >= maps->entries[i].start && addr < maps->entries[i].end)
			return &maps->entries[i];
	return NULL;
}
