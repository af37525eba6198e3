/* SPDX-License-Identifier: MIT */
/* One-line error messages handed back to the caller, who prints them once. */
#ifndef PYDI_ERRBUF_H
#define PYDI_ERRBUF_H

#include <stddef.h>

/* printf into err (a no-op when err is NULL or err_len is 0). */
void set_err(char *err, size_t err_len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif /* PYDI_ERRBUF_H */
