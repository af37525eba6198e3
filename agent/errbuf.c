// SPDX-License-Identifier: MIT
#include <stdarg.h>
#include <stdio.h>

#include "errbuf.h"

void set_err(char *err, size_t err_len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !err_len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, err_len, fmt, ap);
	va_end(ap);
}
