// SPDX-License-Identifier: MIT
/*
 * ELF files reached through /proc/PID/root are the container's: any bytes.
 * The last 8 bytes of the input double as a file offset / vaddr to look up,
 * so lookups reach past the fixed probes below.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "elf_image.h"

static const char *const symbols[] = {
	"_PyRuntime", "Py_Version", "PyThreadState_Get", "main", "",
};
static const char *const sections[] = {
	".dynsym", ".symtab", ".note.gnu.build-id", ".PyRuntime", "",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct elf_image *img;
	uint64_t probe = 0, a, b;

	if (elf_image_open_mem(data, size, &img) != 0)
		return 0;
	if (size >= 8)
		memcpy(&probe, data + size - 8, 8);
	for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++)
		if (elf_image_symbol(img, symbols[i], &a, &b) == 0)
			elf_image_vaddr_to_offset(img, a, &b);
	for (size_t i = 0; i < sizeof(sections) / sizeof(sections[0]); i++)
		elf_image_has_section(img, sections[i]);
	elf_image_is_dyn(img);
	const uint64_t offsets[] = { 0, 0x1000, probe, UINT64_MAX, size };
	for (size_t i = 0; i < sizeof(offsets) / sizeof(offsets[0]); i++) {
		if (elf_image_segment_at(img, offsets[i], &a, &b) == 0)
			elf_image_vaddr_to_offset(img, a, &b);
		elf_image_vaddr_to_offset(img, offsets[i], &b);
	}
	elf_image_close(img);
	return 0;
}
