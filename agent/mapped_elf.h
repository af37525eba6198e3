/* SPDX-License-Identifier: MIT */
/*
 * ELF files a target has mapped, opened the only safe way: through
 * /proc/PID/map_files, which names the file the kernel actually mapped. A
 * path under /proc/PID/root could be a symlink the container planted to a
 * host file; map_files cannot. The file's dev/inode is checked against maps.
 */
#ifndef PYDI_MAPPED_ELF_H
#define PYDI_MAPPED_ELF_H

#include <stdint.h>
#include <sys/types.h>

#include "elf_image.h"
#include "procmaps.h"

/* An fd on the mapped file (O_RDONLY), or a negative errno (-ESTALE: the
 * file is not the one maps describes). */
int mapped_file_open(pid_t pid, const struct map_entry *m);

/* "/proc/PID/map_files/START-END" for m. */
void mapped_file_path(pid_t pid, const struct map_entry *m, char *buf,
		      size_t len);

/* The lowest mapping of the same file as m. */
const struct map_entry *mapped_file_first(const struct proc_maps *maps,
					  const struct map_entry *m);

/* runtime address = ELF vaddr + *bias for the file m belongs to. */
int mapped_elf_bias(struct elf_image *img, const struct proc_maps *maps,
		    const struct map_entry *m, uint64_t *bias);

/* The first mapping whose file name (after the last '/') starts with
 * prefix, e.g. "libc.so" or "memfd:pydi-helper"; NULL if none. */
const struct map_entry *mapped_file_find(const struct proc_maps *maps,
					 const char *prefix);

/* Open m's ELF and look sym up: its runtime address (and size). */
int mapped_elf_symbol(pid_t pid, const struct proc_maps *maps,
		      const struct map_entry *m, const char *sym,
		      uint64_t *addr, uint64_t *size);

#endif /* PYDI_MAPPED_ELF_H */
