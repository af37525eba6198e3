/* SPDX-License-Identifier: MIT */
/* Python's text for captured scalars, computed from raw target bytes. */
#ifndef PYDI_PYREPR_H
#define PYDI_PYREPR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* str(float) as Python prints it: shortest round-trip digits, exponent
 * form when the exponent is < -4 or >= 16, "inf", "nan". */
void py_float_repr(double v, char *buf, size_t len);

/*
 * A PyLong's decimal text from its 30-bit digits (least significant first).
 * Returns the number of characters, or -1 if buf is too small.
 */
int py_long_repr(const uint32_t *digits, size_t ndigits, bool negative,
		 char *buf, size_t len);

/* repr(bytes) for data[0..n): b'...' with Python's escapes. Always
 * terminates buf; returns false if it had to cut the text short. */
bool py_bytes_repr(const uint8_t *data, size_t n, char *buf, size_t len);

#endif /* PYDI_PYREPR_H */
