/* SPDX-License-Identifier: MIT */
/*
 * An ELF file a target has mapped: symbols, load segments, notes. The file
 * is hostile input (a container controls it): every lookup is bounded.
 */
#ifndef PYDI_ELF_IMAGE_H
#define PYDI_ELF_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct elf_image;

/* Takes ownership of fd. 0 or a negative errno (-ENOEXEC: not ELF64). */
int elf_image_open_fd(int fd, struct elf_image **out);
/* The same, over bytes in memory (tests, fuzzing). The buffer must outlive
 * the image. */
int elf_image_open_mem(const void *buf, size_t len, struct elf_image **out);
void elf_image_close(struct elf_image *img);

/* Look a symbol up in .dynsym, then .symtab: 0, -ENOENT. */
int elf_image_symbol(struct elf_image *img, const char *name,
		     uint64_t *vaddr, uint64_t *size);
bool elf_image_has_section(struct elf_image *img, const char *name);
bool elf_image_is_dyn(struct elf_image *img);

/* The PT_LOAD segment whose file range starts in the page at file_offset:
 * 0 with its vaddr and offset, or -ENOENT. */
int elf_image_segment_at(struct elf_image *img, uint64_t file_offset,
			 uint64_t *p_vaddr, uint64_t *p_offset);

/* The file offset that holds vaddr: 0 or -ENOENT (e.g. .bss). */
int elf_image_vaddr_to_offset(struct elf_image *img, uint64_t vaddr,
			      uint64_t *offset);

#endif /* PYDI_ELF_IMAGE_H */
