// SPDX-License-Identifier: MIT
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "mapped_elf.h"

void mapped_file_path(pid_t pid, const struct map_entry *m, char *buf,
		      size_t len)
{
	snprintf(buf, len, "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, pid,
		 m->start, m->end);
}

int mapped_file_open(pid_t pid, const struct map_entry *m)
{
	char path[96];
	struct stat st;
	int fd;

	mapped_file_path(pid, m, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || st.st_ino != m->inode ||
	    major(st.st_dev) != m->dev_major || minor(st.st_dev) != m->dev_minor) {
		close(fd);
		return -ESTALE;
	}
	return fd;
}

static int same_file(const struct map_entry *a, const struct map_entry *b)
{
	return a->inode == b->inode && a->dev_major == b->dev_major &&
	       a->dev_minor == b->dev_minor && strcmp(a->path, b->path) == 0;
}

const struct map_entry *mapped_file_first(const struct proc_maps *maps,
					  const struct map_entry *m)
{
	for (size_t i = 0; i < maps->count; i++)
		if (same_file(&maps->entries[i], m))
			return &maps->entries[i];
	return m;
}

int mapped_elf_bias(struct elf_image *img, const struct proc_maps *maps,
		    const struct map_entry *file, uint64_t *bias)
{
	for (size_t i = 0; i < maps->count; i++) {
		const struct map_entry *m = &maps->entries[i];
		uint64_t p_vaddr, p_offset;

		if (!same_file(m, file))
			continue;
		if (elf_image_segment_at(img, m->offset, &p_vaddr, &p_offset))
			continue;
		*bias = (m->start - m->offset) - (p_vaddr - p_offset);
		return 0;
	}
	return -ENOENT;
}

const struct map_entry *mapped_file_find(const struct proc_maps *maps,
					 const char *prefix)
{
	size_t len = strlen(prefix);

	for (size_t i = 0; i < maps->count; i++) {
		const char *path = maps->entries[i].path;
		const char *slash = strrchr(path, '/');
		const char *name = slash ? slash + 1 : path;

		if (path[0] == '/' && strncmp(name, prefix, len) == 0)
			return mapped_file_first(maps, &maps->entries[i]);
	}
	return NULL;
}

int mapped_elf_symbol(pid_t pid, const struct proc_maps *maps,
		      const struct map_entry *m, const char *sym,
		      uint64_t *addr, uint64_t *size)
{
	struct elf_image *img;
	uint64_t vaddr, bias;
	int fd, err;

	fd = mapped_file_open(pid, m);
	if (fd < 0)
		return fd;
	err = elf_image_open_fd(fd, &img);
	if (err)
		return err;
	err = elf_image_symbol(img, sym, &vaddr, size);
	if (!err)
		err = mapped_elf_bias(img, maps, m, &bias);
	if (!err)
		*addr = vaddr + bias;
	elf_image_close(img);
	return err;
}
