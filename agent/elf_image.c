// SPDX-License-Identifier: MIT
#include <errno.h>
#include <gelf.h>
#include <libelf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elf_image.h"

/* A hostile file may claim billions of symbols or headers; stop early. */
#define ELF_MAX_SYMBOLS		(4u << 20)
#define ELF_MAX_PHDRS		256
#define ELF_MAX_SECTIONS	65536

struct elf_image {
	Elf *elf;
	int fd;
	GElf_Ehdr ehdr;
	size_t nphdrs;
	GElf_Phdr phdrs[ELF_MAX_PHDRS];
};

static int load_headers(struct elf_image *img)
{
	size_t n;

	if (elf_kind(img->elf) != ELF_K_ELF || !gelf_getehdr(img->elf, &img->ehdr))
		return -ENOEXEC;
	if (img->ehdr.e_ident[EI_CLASS] != ELFCLASS64)
		return -ENOEXEC;
	if (elf_getphdrnum(img->elf, &n))
		return -ENOEXEC;
	img->nphdrs = 0;
	for (size_t i = 0; i < n && img->nphdrs < ELF_MAX_PHDRS; i++) {
		GElf_Phdr ph;

		if (!gelf_getphdr(img->elf, (int)i, &ph))
			return -ENOEXEC;
		if (ph.p_type == PT_LOAD)
			img->phdrs[img->nphdrs++] = ph;
	}
	return 0;
}

static int image_new(int fd, const void *buf, size_t len,
		     struct elf_image **out)
{
	struct elf_image *img;
	int err;

	if (elf_version(EV_CURRENT) == EV_NONE)
		return -ENOTSUP;
	img = calloc(1, sizeof(*img));
	if (!img)
		return -ENOMEM;
	img->fd = fd;
	if (buf)
		img->elf = elf_memory((char *)buf, len);
	else
		img->elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!img->elf) {
		err = -ENOEXEC;
		goto fail;
	}
	err = load_headers(img);
	if (err)
		goto fail;
	*out = img;
	return 0;
fail:
	elf_image_close(img);
	return err;
}

int elf_image_open_fd(int fd, struct elf_image **out)
{
	int err = image_new(fd, NULL, 0, out);

	if (err && fd >= 0)
		close(fd);
	return err;
}

int elf_image_open_mem(const void *buf, size_t len, struct elf_image **out)
{
	return image_new(-1, buf, len, out);
}

void elf_image_close(struct elf_image *img)
{
	if (!img)
		return;
	if (img->elf)
		elf_end(img->elf);
	if (img->fd >= 0)
		close(img->fd);
	free(img);
}

static int find_in_symtab(struct elf_image *img, Elf_Scn *scn,
			  const GElf_Shdr *sh, const char *name,
			  uint64_t *vaddr, uint64_t *size)
{
	Elf_Data *data = elf_getdata(scn, NULL);
	size_t count;

	if (!data || sh->sh_entsize == 0)
		return -ENOENT;
	count = data->d_size / sh->sh_entsize;
	if (count > ELF_MAX_SYMBOLS)
		count = ELF_MAX_SYMBOLS;
	for (size_t i = 0; i < count; i++) {
		GElf_Sym sym;
		const char *sname;

		if (!gelf_getsym(data, (int)i, &sym))
			break;
		if (sym.st_shndx == SHN_UNDEF || sym.st_value == 0)
			continue;
		sname = elf_strptr(img->elf, sh->sh_link, sym.st_name);
		if (sname && strcmp(sname, name) == 0) {
			*vaddr = sym.st_value;
			if (size)
				*size = sym.st_size;
			return 0;
		}
	}
	return -ENOENT;
}

static int find_symbol_of_type(struct elf_image *img, Elf64_Word type,
			       const char *name, uint64_t *vaddr,
			       uint64_t *size)
{
	Elf_Scn *scn = NULL;
	size_t seen = 0;

	while ((scn = elf_nextscn(img->elf, scn)) && seen++ < ELF_MAX_SECTIONS) {
		GElf_Shdr sh;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != type)
			continue;
		if (find_in_symtab(img, scn, &sh, name, vaddr, size) == 0)
			return 0;
	}
	return -ENOENT;
}

int elf_image_symbol(struct elf_image *img, const char *name,
		     uint64_t *vaddr, uint64_t *size)
{
	if (find_symbol_of_type(img, SHT_DYNSYM, name, vaddr, size) == 0)
		return 0;
	return find_symbol_of_type(img, SHT_SYMTAB, name, vaddr, size);
}

bool elf_image_has_section(struct elf_image *img, const char *name)
{
	Elf_Scn *scn = NULL;
	size_t shstrndx, seen = 0;

	if (elf_getshdrstrndx(img->elf, &shstrndx))
		return false;
	while ((scn = elf_nextscn(img->elf, scn)) && seen++ < ELF_MAX_SECTIONS) {
		GElf_Shdr sh;
		const char *sname;

		if (!gelf_getshdr(scn, &sh))
			continue;
		sname = elf_strptr(img->elf, shstrndx, sh.sh_name);
		if (sname && strcmp(sname, name) == 0)
			return true;
	}
	return false;
}

bool elf_image_is_dyn(struct elf_image *img)
{
	return img->ehdr.e_type == ET_DYN;
}

int elf_image_segment_at(struct elf_image *img, uint64_t file_offset,
			 uint64_t *p_vaddr, uint64_t *p_offset)
{
	for (size_t i = 0; i < img->nphdrs; i++) {
		const GElf_Phdr *ph = &img->phdrs[i];
		uint64_t page_offset = ph->p_offset & ~(uint64_t)0xfff;

		if (page_offset == file_offset) {
			*p_vaddr = ph->p_vaddr;
			*p_offset = ph->p_offset;
			return 0;
		}
	}
	return -ENOENT;
}

int elf_image_vaddr_to_offset(struct elf_image *img, uint64_t vaddr,
			      uint64_t *offset)
{
	for (size_t i = 0; i < img->nphdrs; i++) {
		const GElf_Phdr *ph = &img->phdrs[i];

		if (vaddr >= ph->p_vaddr && vaddr - ph->p_vaddr < ph->p_filesz) {
			*offset = vaddr - ph->p_vaddr + ph->p_offset;
			return 0;
		}
	}
	return -ENOENT;
}
