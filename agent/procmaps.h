/* SPDX-License-Identifier: MIT */
/* /proc/PID/maps, parsed. */
#ifndef PYDI_PROCMAPS_H
#define PYDI_PROCMAPS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct map_entry {
	uint64_t start;
	uint64_t end;
	uint64_t offset;	/* file offset of start */
	uint64_t inode;
	unsigned int dev_major;
	unsigned int dev_minor;
	char perms[5];
	char *path;		/* "" for anonymous mappings */
};

struct proc_maps {
	struct map_entry *entries;
	size_t count;
};

/* Never read more than this from a maps file the target shapes. */
#define PROC_MAPS_MAX_BYTES (64u << 20)

int proc_maps_read(pid_t pid, struct proc_maps *maps);
/* Parse maps text (need not be NUL-terminated). 0 or -EINVAL/-ENOMEM. */
int proc_maps_parse(const char *text, size_t len, struct proc_maps *maps);
void proc_maps_free(struct proc_maps *maps);

/* The mapping holding addr, or NULL. */
const struct map_entry *proc_maps_find(const struct proc_maps *maps,
				       uint64_t addr);

/* Read a whole small file (bounded by max); *out is NUL-terminated. */
int read_file_bounded(const char *path, size_t max, char **out, size_t *len);

#endif /* PYDI_PROCMAPS_H */
