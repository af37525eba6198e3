/* SPDX-License-Identifier: MIT */
#ifndef PYDI_PY_OFFSETS_JSON_H
#define PYDI_PY_OFFSETS_JSON_H

#include <jansson.h>

#include "py_offsets.h"

/* Every field by name; PY_OFF_NONE becomes null. */
json_t *py_offsets_to_json(const struct py_offsets *off);

#endif /* PYDI_PY_OFFSETS_JSON_H */
