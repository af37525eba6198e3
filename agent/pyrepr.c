// SPDX-License-Identifier: MIT
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pyrepr.h"

#define PYLONG_SHIFT 30
#define PYLONG_MASK ((1u << PYLONG_SHIFT) - 1)

void py_float_repr(double v, char *buf, size_t len)
{
	char sci[40], digits[24];
	int exp, ndigits = 0, prec;

	if (isnan(v)) {
		snprintf(buf, len, "nan");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, len, v < 0 ? "-inf" : "inf");
		return;
	}
	/* Shortest precision that reads back as the same double. */
	for (prec = 1; prec <= 17; prec++) {
		snprintf(sci, sizeof(sci), "%.*e", prec - 1, v);
		if (strtod(sci, NULL) == v)
			break;
	}
	/* sci is [-]d[.ddd]e[+-]xx: split digits and exponent. */
	{
		const char *p = sci;
		bool negative = *p == '-';

		if (negative)
			p++;
		for (; *p && *p != 'e'; p++)
			if (*p != '.')
				digits[ndigits++] = *p;
		digits[ndigits] = '\0';
		exp = atoi(p + 1);
		while (ndigits > 1 && digits[ndigits - 1] == '0')
			digits[--ndigits] = '\0';
		if (exp < -4 || exp >= 16) {
			snprintf(buf, len, "%s%c%s%se%c%02d", negative ? "-" : "",
				 digits[0], ndigits > 1 ? "." : "", digits + 1,
				 exp < 0 ? '-' : '+', abs(exp));
		} else if (exp < 0) {
			{
				char tmp[64];
				int z = -exp - 1, o = 0;

				o += snprintf(tmp + o, sizeof(tmp) - o, "%s0.",
					      negative ? "-" : "");
				while (z-- > 0)
					tmp[o++] = '0';
				snprintf(tmp + o, sizeof(tmp) - o, "%s", digits);
				snprintf(buf, len, "%s", tmp);
			}
		} else {
			char tmp[64];
			int o = 0, i;

			if (negative)
				tmp[o++] = '-';
			for (i = 0; i <= exp; i++)
				tmp[o++] = i < ndigits ? digits[i] : '0';
			tmp[o++] = '.';
			if (ndigits > exp + 1)
				for (i = exp + 1; i < ndigits; i++)
					tmp[o++] = digits[i];
			else
				tmp[o++] = '0';
			tmp[o] = '\0';
			snprintf(buf, len, "%s", tmp);
		}
	}
}

int py_long_repr(const uint32_t *digits, size_t ndigits, bool negative,
		 char *buf, size_t len)
{
	uint32_t work[64];
	char rev[640];
	size_t n = ndigits, o = 0, r = 0;

	if (ndigits > sizeof(work) / sizeof(work[0]))
		return -1;
	for (size_t i = 0; i < n; i++)
		work[i] = digits[i] & PYLONG_MASK;
	while (n && work[n - 1] == 0)
		n--;
	if (n == 0) {
		if (len < 2)
			return -1;
		strcpy(buf, "0");
		return 1;
	}
	/* Repeated division by 10 of the base-2^30 number. */
	while (n) {
		uint64_t rem = 0;

		for (size_t i = n; i-- > 0;) {
			uint64_t cur = (rem << PYLONG_SHIFT) | work[i];

			work[i] = (uint32_t)(cur / 10);
			rem = cur % 10;
		}
		if (r >= sizeof(rev))
			return -1;
		rev[r++] = (char)('0' + rem);
		while (n && work[n - 1] == 0)
			n--;
	}
	if (r + (negative ? 2 : 1) > len)
		return -1;
	if (negative)
		buf[o++] = '-';
	while (r)
		buf[o++] = rev[--r];
	buf[o] = '\0';
	return (int)o;
}

bool py_bytes_repr(const uint8_t *data, size_t n, char *buf, size_t len)
{
	bool has_single = memchr(data, '\'', n) && !memchr(data, '"', n);
	char quote = has_single ? '"' : '\'';
	size_t o = 0;

	if (len < 4) {
		if (len)
			buf[0] = '\0';
		return false;
	}
	buf[o++] = 'b';
	buf[o++] = quote;
	for (size_t i = 0; i < n; i++) {
		char esc[5];
		uint8_t c = data[i];

		if (c == (uint8_t)quote || c == '\\')
			snprintf(esc, sizeof(esc), "\\%c", c);
		else if (c == '\t')
			snprintf(esc, sizeof(esc), "\\t");
		else if (c == '\n')
			snprintf(esc, sizeof(esc), "\\n");
		else if (c == '\r')
			snprintf(esc, sizeof(esc), "\\r");
		else if (c < 0x20 || c >= 0x7f)
			snprintf(esc, sizeof(esc), "\\x%02x", c);
		else
			snprintf(esc, sizeof(esc), "%c", c);
		if (o + strlen(esc) + 2 > len) {
			buf[o] = '\0';
			return false;
		}
		memcpy(buf + o, esc, strlen(esc));
		o += strlen(esc);
	}
	buf[o++] = quote;
	buf[o] = '\0';
	return true;
}
