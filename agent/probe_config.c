// SPDX-License-Identifier: MIT
/*
 * BreakpointConfiguration, read the way ADOT's Python debugger reads it
 * (debugger/_data_models.py, from_api_config): the same defaults, the same
 * lenient coercions (numeric strings, truthy values) and the same clamping,
 * so that one configuration behaves alike under ADOT and under pydi. Where
 * ADOT silently drops a config, pydi either keeps it so that it can report
 * why (a non-Python Language: LANGUAGE_MISMATCH) or refuses it with a reason
 * (-EINVAL), because a dropped config would otherwise never get a status.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "errbuf.h"
#include "fnv1a.h"
#include "probe_config.h"

/* ADOT's capture limits: default, minimum, maximum (CaptureConfig). */
#define MAX_HITS_DEFAULT		100
#define MAX_HITS_MIN			1
#define MAX_HITS_MAX			1000
#define MAX_STRING_DEFAULT		255
#define MAX_STRING_MAX			255
#define MAX_WIDTH_DEFAULT		20
#define MAX_WIDTH_MAX			20
#define MAX_COLLECTION_DEPTH_DEFAULT	3
#define MAX_COLLECTION_DEPTH_MAX	5
#define MAX_OBJECT_DEPTH_DEFAULT	3
#define MAX_OBJECT_DEPTH_MAX		5
#define MAX_FIELDS_DEFAULT		20
#define MAX_FIELDS_MAX			20
#define MAX_FRAMES_DEFAULT		20
#define MAX_FRAMES_MAX			20
#define MAX_STACK_TRACE_SIZE_DEFAULT	200
#define MAX_STACK_TRACE_SIZE_MAX	1000
#define LIMIT_MIN			1

/*
 * ADOT's CaptureRateLimiter: a fixed one-second window allowing this many
 * captures per probe and process, for BREAKPOINT and PROBE alike; a call
 * it turns away does not count towards MaxHits. No config key changes it.
 */
#define CAPTURES_PER_SECOND_DEFAULT	5.0

/* datetime's range (years 1..9999): ADOT treats anything outside as invalid. */
#define EPOCH_S_MIN	(-62135596800LL)	/* 0001-01-01T00:00:00Z */
#define EPOCH_S_MAX	253402300799LL		/* 9999-12-31T23:59:59Z */

const char *probe_kind_name(enum probe_kind kind)
{
	return kind == PROBE_KIND_PROBE ? "PROBE" : "BREAKPOINT";
}

/* ---- Python's coercions -------------------------------------------------- */

static bool is_py_space(char ch)
{
	return ch == ' ' || (ch >= '\t' && ch <= '\r');
}

/*
 * int(s) for a str, base 10: surrounding whitespace, an optional sign,
 * digits with single underscores between them. Saturates (every caller
 * clamps or range-checks afterwards, so the exact huge value never matters).
 */
static bool py_int_from_str(const char *s, size_t len, int64_t *out)
{
	const char *end = s + len;
	bool neg = false, digit_seen = false, last_underscore = false;
	int64_t v = 0;

	while (s < end && is_py_space(*s))
		s++;
	while (end > s && is_py_space(end[-1]))
		end--;
	if (s < end && (*s == '+' || *s == '-'))
		neg = *s++ == '-';
	for (; s < end; s++) {
		if (*s == '_') {
			if (!digit_seen || last_underscore)
				return false;
			last_underscore = true;
			continue;
		}
		if (*s < '0' || *s > '9')
			return false;
		if (v > (INT64_MAX - (*s - '0')) / 10)
			v = INT64_MAX;
		else
			v = v * 10 + (*s - '0');
		digit_seen = true;
		last_underscore = false;
	}
	if (!digit_seen || last_underscore)
		return false;
	*out = neg ? -v : v;
	return true;
}

/* True when d is a whole number that int64_t holds (no libm needed). */
static bool is_whole(double d)
{
	return d > -9.2e18 && d < 9.2e18 && (double)(int64_t)d == d;
}

/* int(float): truncation toward zero, saturated. */
static int64_t py_int_from_real(double d)
{
	if (d >= 9.2e18)
		return INT64_MAX;
	if (d <= -9.2e18)
		return -INT64_MAX;
	return (int64_t)d;
}

/*
 * ADOT's safe_int: bool and None give the default (bool is an int subclass
 * in Python, so it is excluded explicitly there); int(), which takes ints,
 * floats and numeric strings, else the default.
 */
static int64_t safe_int(const json_t *v, int64_t dflt)
{
	int64_t out;

	if (!v || json_is_null(v) || json_is_boolean(v))
		return dflt;
	if (json_is_integer(v))
		return json_integer_value(v);
	if (json_is_real(v))
		return py_int_from_real(json_real_value(v));
	if (json_is_string(v) &&
	    py_int_from_str(json_string_value(v), json_string_length(v), &out))
		return out;
	return dflt;
}

/* Python truthiness of a JSON value. */
static bool py_truthy(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return json_object_size(v) > 0;
	case JSON_ARRAY:
		return json_array_size(v) > 0;
	case JSON_STRING:
		return json_string_length(v) > 0;
	case JSON_INTEGER:
		return json_integer_value(v) != 0;
	case JSON_REAL:
		return json_real_value(v) != 0.0;
	case JSON_TRUE:
		return true;
	default:
		return false;
	}
}

/*
 * ADOT's safe_bool: a bool as is; a string is true only when it is "true",
 * "1" or "yes" in any case; None gives the default; anything else its
 * truthiness.
 */
static bool safe_bool(const json_t *v, bool dflt)
{
	if (!v || json_is_null(v))
		return dflt;
	if (json_is_string(v)) {
		const char *s = json_string_value(v);

		if (strlen(s) != json_string_length(v))
			return false;
		return !strcasecmp(s, "true") || !strcmp(s, "1") ||
		       !strcasecmp(s, "yes");
	}
	return py_truthy(v);
}

/* safe_int, then CaptureConfig._clamp. */
static unsigned int clamp_limit(const json_t *limits, const char *key,
				unsigned int min, unsigned int max,
				unsigned int dflt)
{
	int64_t v = safe_int(json_object_get(limits, key), dflt);

	if (v < min)
		return min;
	if (v > max)
		return max;
	return (unsigned int)v;
}

/* ---- ExpiresAt ----------------------------------------------------------- */

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static bool is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
	static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31,
				    30, 31 };

	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/*
 * Python's int() of a slice s[pos:pos+n] of an ISO string, as dateutil
 * takes it: the slice is cut short at the end of the string, and int()
 * allows surrounding whitespace, a sign and underscores.
 */
static bool slice_int(const char *s, size_t len, size_t pos, size_t n, int *out)
{
	size_t end = pos + n < len ? pos + n : len;
	int64_t v;

	if (pos >= end || !py_int_from_str(s + pos, end - pos, &v))
		return false;
	*out = (int)v;	/* at most 4 characters: always fits */
	return true;
}

struct iso_time {
	int year, month, day, hour, minute, second, usec;
	int offset_s;
};

/*
 * The date forms dateutil's isoparse accepts, tried in its order: the
 * common ones (YYYY, YYYY-MM, YYYY-MM-DD, YYYYMMDD) and, when those do not
 * fit, ISO weeks (YYYY-Www[-D], YYYYWww[D]) and ordinal days (YYYY-DDD,
 * YYYYDDD). Returns the position after the date, or 0.
 */
static size_t iso_date_common(const char *s, size_t len, struct iso_time *t)
{
	size_t pos = 4;
	bool has_sep;

	if (len < 4 || !slice_int(s, len, 0, 4, &t->year))
		return 0;
	t->month = t->day = 1;
	if (pos >= len)
		return pos;
	has_sep = s[pos] == '-';
	pos += has_sep;
	if (len - pos < 2 || !slice_int(s, len, pos, 2, &t->month))
		return 0;
	pos += 2;
	if (pos >= len)
		return has_sep ? pos : 0;
	if (has_sep) {
		if (s[pos] != '-')
			return 0;
		pos++;
	}
	if (len - pos < 2 || !slice_int(s, len, pos, 2, &t->day))
		return 0;
	return pos + 2;
}

static size_t iso_date_uncommon(const char *s, size_t len, struct iso_time *t)
{
	size_t pos;
	bool has_sep;
	int64_t days;

	if (len < 4 || !slice_int(s, len, 0, 4, &t->year))
		return 0;
	has_sep = len > 4 && s[4] == '-';
	pos = 4 + has_sep;
	if (pos < len && s[pos] == 'W') {
		int week, weekday = 1, jan4_iso_wd;

		pos++;
		if (!slice_int(s, len, pos, 2, &week))
			return 0;
		pos += 2;
		if (pos < len) {
			if ((s[pos] == '-') != has_sep)
				return 0;
			pos += has_sep;
			if (!slice_int(s, len, pos, 1, &weekday))
				return 0;
			pos++;
		}
		if (week < 1 || week > 53 || weekday < 1 || weekday > 7 ||
		    t->year < 1)
			return 0;
		/* Week 1 is the one holding 4 January (isocalendar). */
		days = days_from_civil(t->year, 1, 4);
		jan4_iso_wd = (int)(((days % 7) + 7 + 3) % 7) + 1; /* 1970-01-01: Thu */
		days += -(jan4_iso_wd - 1) + (week - 1) * 7 + (weekday - 1);
	} else {
		int ordinal;

		if (len < pos + 3 || !slice_int(s, len, pos, 3, &ordinal))
			return 0;
		pos += 3;
		if (ordinal < 1 || ordinal > 365 + is_leap(t->year) ||
		    t->year < 1)
			return 0;
		days = days_from_civil(t->year, 1, 1) + ordinal - 1;
	}
	/* Back to a calendar date: the result may cross into another year. */
	{
		int64_t z = days + 719468, era, doe, yoe, doy, mp, y;

		era = (z >= 0 ? z : z - 146096) / 146097;
		doe = z - era * 146097;
		yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
		y = yoe + era * 400;
		doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
		mp = (5 * doy + 2) / 153;
		t->day = (int)(doy - (153 * mp + 2) / 5 + 1);
		t->month = (int)(mp < 10 ? mp + 3 : mp - 9);
		t->year = (int)(y + (t->month <= 2));
	}
	return pos;
}

/* Z, z, ±HH, ±HHMM, ±HH:MM (and the odd lengths dateutil lets through). */
static bool iso_tz(const char *s, size_t len, int *offset_s)
{
	int sign, hours, minutes = 0;

	if (len == 1 && (s[0] == 'Z' || s[0] == 'z')) {
		*offset_s = 0;
		return true;
	}
	if (len != 3 && len != 5 && len != 6)
		return false;
	if (s[0] != '+' && s[0] != '-')
		return false;
	sign = s[0] == '-' ? -1 : 1;
	if (!slice_int(s, len, 1, 2, &hours))
		return false;
	if (len > 3) {
		size_t from = s[3] == ':' ? 4 : 3;

		if (!slice_int(s, len, from, len - from, &minutes))
			return false;
	}
	if (hours || minutes) {
		if (minutes > 59 || hours > 23)
			return false;
	}
	*offset_s = sign * (hours * 60 + minutes) * 60;
	return true;
}

/* hh[[:]mm[[:]ss[(.|,)f…]]] then an optional zone. */
static bool iso_clock(const char *s, size_t len, struct iso_time *t)
{
	int *fields[3] = { &t->hour, &t->minute, &t->second };
	size_t pos = 0;
	bool has_sep = false;

	if (len < 2)
		return false;
	for (int comp = 0; pos < len && comp < 5; comp++) {
		if (s[pos] == '-' || s[pos] == '+' || s[pos] == 'Z' ||
		    s[pos] == 'z') {
			if (!iso_tz(s + pos, len - pos, &t->offset_s))
				return false;
			pos = len;
			break;
		}
		if (comp == 1 && s[pos] == ':') {
			has_sep = true;
			pos++;
		} else if (comp == 2 && has_sep) {
			if (s[pos] != ':')
				return false;
			pos++;
		}
		if (comp < 3) {
			if (!slice_int(s, len, pos, 2, fields[comp]))
				return false;
			pos += 2;
		}
		if (comp == 3 && pos + 1 < len &&
		    (s[pos] == '.' || s[pos] == ',') &&
		    s[pos + 1] >= '0' && s[pos + 1] <= '9') {
			size_t digits = 0;

			pos++;
			t->usec = 0;
			for (; pos < len && s[pos] >= '0' && s[pos] <= '9';
			     pos++, digits++) {
				if (digits < 6)
					t->usec = t->usec * 10 + (s[pos] - '0');
			}
			for (; digits < 6; digits++)
				t->usec *= 10;
		}
	}
	if (pos < len)
		return false;
	if (t->hour == 24 && (t->minute || t->second || t->usec))
		return false;
	return true;
}

/*
 * dateutil's isoparse (any single character separates date and time), a
 * zone-less time taken as UTC as ADOT does. False when it is not a valid
 * datetime.
 */
static bool iso8601_to_ms(const char *s, size_t len, int64_t *ms)
{
	struct iso_time t = { 0 };
	size_t pos;
	int64_t days;

	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] >= 0x80)
			return false;	/* isoparse takes ASCII only */
	pos = iso_date_common(s, len, &t);
	if (!pos)
		pos = iso_date_uncommon(s, len, &t);
	if (!pos)
		return false;
	if (len > pos && !iso_clock(s + pos + 1, len - pos - 1, &t))
		return false;
	if (t.year < 1 || t.year > 9999 || t.month < 1 || t.month > 12 ||
	    t.day < 1 || t.day > days_in_month(t.year, t.month) ||
	    t.hour < 0 || t.hour > 24 || t.minute < 0 || t.minute > 59 ||
	    t.second < 0 || t.second > 59)
		return false;
	days = days_from_civil(t.year, t.month, t.day);
	if (t.hour == 24) {	/* 24:00 is the next day's midnight */
		if (t.year == 9999 && t.month == 12 && t.day == 31)
			return false;
		t.hour = 0;
		days++;
	}
	*ms = ((days * 86400 + t.hour * 3600 + t.minute * 60 + t.second -
		t.offset_s) * 1000) + t.usec / 1000;
	return true;
}

/*
 * ExpiresAt: epoch seconds (int or float; Python's bool counts as an int)
 * or an ISO 8601 string. 0 when it is absent, falsy or invalid, as ADOT
 * then has no expiry. A real instant that lands on 0 ms is moved to 1 ms,
 * since 0 means "never" here.
 */
static int64_t parse_expires_at(const json_t *v)
{
	int64_t ms;

	if (!v || !py_truthy(v))
		return 0;
	if (json_is_integer(v) || json_is_boolean(v)) {
		int64_t sec = json_is_boolean(v) ? 1 : json_integer_value(v);

		if (sec < EPOCH_S_MIN || sec > EPOCH_S_MAX)
			return 0;
		ms = sec * 1000;
	} else if (json_is_real(v)) {
		double sec = json_real_value(v);

		if (!(sec >= (double)EPOCH_S_MIN && sec < (double)EPOCH_S_MAX + 1))
			return 0;
		double scaled = sec * 1000.0;

		ms = (int64_t)scaled;	/* toward zero; floor for the past */
		if ((double)ms > scaled)
			ms--;
	} else if (json_is_string(v)) {
		if (!iso8601_to_ms(json_string_value(v), json_string_length(v),
				   &ms))
			return 0;
	} else {
		return 0;
	}
	return ms ? ms : 1;
}

/* ---- fields --------------------------------------------------------------- */

/* Copy a JSON string whole, or fail: an identifier is never truncated. */
static int copy_string(char *dst, size_t dst_len, const json_t *v,
		       const char *field, char *err, size_t err_len)
{
	size_t len = json_string_length(v);

	if (strlen(json_string_value(v)) != len) {
		set_err(err, err_len, "%s contains a NUL character", field);
		return -EINVAL;
	}
	if (len >= dst_len) {
		set_err(err, err_len, "%s is %zu bytes long, the limit is %zu",
			field, len, dst_len - 1);
		return -EINVAL;
	}
	memcpy(dst, json_string_value(v), len + 1);
	return 0;
}

/*
 * A name that goes into the helper's target string "module:qualname@LINE":
 * a ':' or '@' in it (or a '/' or ".py" ending in the module, which make the
 * helper read a file target) would make the helper probe something else
 * than the config names, so such a name is refused rather than misread.
 */
static int check_target_name(const char *s, const char *field, bool module,
			     char *err, size_t err_len)
{
	size_t len = strlen(s);

	for (const char *p = s; *p; p++) {
		if (*p == ':' || *p == '@' || (unsigned char)*p <= ' ' ||
		    *p == 0x7f || (module && *p == '/')) {
			set_err(err, err_len,
				"%s '%s' contains '%c', which a Python %s name cannot hold",
				field, s, (unsigned char)*p > ' ' && *p != 0x7f ? *p : '?',
				module ? "module" : "function");
			return -EINVAL;
		}
	}
	if (module && len >= 3 && !strcmp(s + len - 3, ".py")) {
		set_err(err, err_len,
			"%s '%s' is a file name; CodeUnit is a module name (e.g. app.orders)",
			field, s);
		return -EINVAL;
	}
	return 0;
}

/*
 * CaptureArguments / CaptureLocals. ADOT: absent = capture none; present
 * and a list = those names ([] = all); present but not a list (null
 * included) = all. Only strings can name a variable, so other entries are
 * dropped; a non-empty list with no string left names nothing and so
 * captures nothing (NULL), never "all".
 */
static int parse_capture_list(const json_t *capture, const char *key,
			      json_t **out)
{
	const json_t *v = json_object_get(capture, key);
	json_t *names;
	size_t i;
	json_t *item;

	*out = NULL;
	if (!v)
		return 0;
	names = json_array();
	if (!names)
		return -ENOMEM;
	if (json_is_array(v)) {
		json_array_foreach(v, i, item) {
			if (json_is_string(item) &&
			    json_array_append(names, item)) {
				json_decref(names);
				return -ENOMEM;
			}
		}
		if (json_array_size(v) && !json_array_size(names)) {
			json_decref(names);
			return 0;
		}
	}
	*out = names;
	return 0;
}

/*
 * AttributeFilters, stored so that probe_config_matches_attrs gives ADOT's
 * answer (_debugger_client._matches_attribute_filters, which sees the raw
 * value): a falsy value matches every process (NULL here); a list keeps its
 * objects (the others are skipped there), and a list with none left
 * matches no process ([]); a number or true makes ADOT's check raise, which
 * it answers with "match" (NULL); a non-empty object or string iterates to
 * non-objects and matches nothing ([]).
 */
static int parse_attribute_filters(const json_t *v, json_t **out)
{
	json_t *filters, *item;
	size_t i;

	*out = NULL;
	if (!v || !py_truthy(v) || json_is_number(v) || json_is_true(v))
		return 0;
	filters = json_array();
	if (!filters)
		return -ENOMEM;
	if (json_is_array(v)) {
		json_array_foreach(v, i, item) {
			if (json_is_object(item) &&
			    json_array_append(filters, item)) {
				json_decref(filters);
				return -ENOMEM;
			}
		}
	}
	*out = filters;
	return 0;
}

/* FNV-1a 64 of the canonical JSON: key order and spacing do not count. */
static int fingerprint(const json_t *cfg, char out[17])
{
	char *text = json_dumps(cfg, JSON_SORT_KEYS | JSON_COMPACT);
	uint64_t h;

	if (!text)
		return -ENOMEM;
	h = fnv1a(FNV1A_INIT, text, strlen(text));
	free(text);
	snprintf(out, 17, "%016llx", (unsigned long long)h);
	return 0;
}

/* An optional pydi string key: absent or null = any. */
static int optional_string(const json_t *cfg, const char *key, char *dst,
			   size_t dst_len, char *err, size_t err_len)
{
	const json_t *v = json_object_get(cfg, key);

	if (!v || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		set_err(err, err_len, "%s must be a string", key);
		return -EINVAL;
	}
	return copy_string(dst, dst_len, v, key, err, err_len);
}

static int parse_location(const json_t *cfg, struct probe_config *c,
			  char *err, size_t err_len)
{
	const json_t *loc = json_object_get(cfg, "Location");
	const json_t *v, *cls, *method;
	const char *where = "Location";
	const char *function_field = "MethodName";
	int64_t line;
	int ret;

	if (!loc) {
		set_err(err, err_len, "no Location");
		return -EINVAL;
	}
	if (!json_is_object(loc)) {
		set_err(err, err_len, "Location must be an object");
		return -EINVAL;
	}
	/* The union form wraps the fields in CodeLocation; legacy is flat. */
	if (json_object_get(loc, "CodeLocation")) {
		loc = json_object_get(loc, "CodeLocation");
		where = "Location.CodeLocation";
		if (!json_is_object(loc)) {
			set_err(err, err_len, "%s must be an object", where);
			return -EINVAL;
		}
	}

	v = json_object_get(loc, "Language");
	if (json_is_string(v)) {
		ret = copy_string(c->language, sizeof(c->language), v,
				  "Language", err, err_len);
		if (ret)
			return ret;
	}
	/* ADOT drops anything but "python" (any case); pydi reports it. */
	c->language_python = !strcasecmp(c->language, "python");

	v = json_object_get(loc, "CodeUnit");
	if (!v || json_is_null(v) ||
	    (json_is_string(v) && !json_string_length(v))) {
		set_err(err, err_len, "%s.CodeUnit (the module) is missing or empty",
			where);
		return -EINVAL;
	}
	if (!json_is_string(v)) {
		set_err(err, err_len, "%s.CodeUnit must be a string", where);
		return -EINVAL;
	}
	ret = copy_string(c->module, sizeof(c->module), v, "CodeUnit", err,
			  err_len);
	if (ret)
		return ret;

	cls = json_object_get(loc, "ClassName");
	method = json_object_get(loc, "MethodName");
	if (!method || json_is_null(method) ||
	    (json_is_string(method) && !json_string_length(method))) {
		set_err(err, err_len, "%s.MethodName is missing or empty", where);
		return -EINVAL;
	}
	if (!json_is_string(method)) {
		set_err(err, err_len, "%s.MethodName must be a string", where);
		return -EINVAL;
	}
	if (cls && !json_is_null(cls) && !json_is_string(cls)) {
		set_err(err, err_len, "%s.ClassName must be a string", where);
		return -EINVAL;
	}
	if (json_is_string(cls) && json_string_length(cls)) {
		/* ClassName.MethodName, as ADOT builds the function name. */
		size_t cls_len = json_string_length(cls);
		size_t method_len = json_string_length(method);

		if (strlen(json_string_value(cls)) != cls_len ||
		    strlen(json_string_value(method)) != method_len) {
			set_err(err, err_len,
				"%s.ClassName or MethodName contains a NUL character",
				where);
			return -EINVAL;
		}
		if (cls_len + 1 + method_len >= sizeof(c->function)) {
			set_err(err, err_len,
				"ClassName.MethodName is %zu bytes long, the limit is %zu",
				cls_len + 1 + method_len, sizeof(c->function) - 1);
			return -EINVAL;
		}
		snprintf(c->function, sizeof(c->function), "%s.%s",
			 json_string_value(cls), json_string_value(method));
		function_field = "ClassName.MethodName";
	} else {
		ret = copy_string(c->function, sizeof(c->function), method,
				  "MethodName", err, err_len);
		if (ret)
			return ret;
	}
	/* Only a Python config becomes a target; others are reported. */
	if (c->language_python) {
		ret = check_target_name(c->module, "CodeUnit", true, err,
					err_len);
		if (!ret)
			ret = check_target_name(c->function, function_field,
						false, err, err_len);
		if (ret)
			return ret;
	}

	v = json_object_get(loc, "FilePath");
	if (json_is_string(v)) {
		ret = copy_string(c->file_path, sizeof(c->file_path), v,
				  "FilePath", err, err_len);
		if (ret)
			return ret;
	}

	/* 0 or absent: function level; a PROBE is always function level. */
	line = safe_int(json_object_get(loc, "LineNumber"), 0);
	if (c->kind == PROBE_KIND_PROBE && line > 0)
		line = 0;
	if (line < 0) {
		set_err(err, err_len, "%s.LineNumber %lld is negative", where,
			(long long)line);
		return -EINVAL;
	}
	if (line > INT_MAX) {
		set_err(err, err_len, "%s.LineNumber %lld is too large", where,
			(long long)line);
		return -EINVAL;
	}
	c->line = (int)line;
	return 0;
}

static int parse_capture(const json_t *cfg, struct probe_config *c)
{
	const json_t *capture = json_object_get(cfg, "CaptureConfiguration");
	const json_t *limits;
	int ret;

	/* Wrong shapes fall back to the defaults, as in ADOT. */
	if (!json_is_object(capture))
		capture = NULL;
	else if (json_object_get(capture, "CodeCapture")) {
		capture = json_object_get(capture, "CodeCapture");
		if (!json_is_object(capture))
			capture = NULL;
	}
	limits = json_object_get(capture, "CaptureLimits");
	if (!json_is_object(limits))
		limits = NULL;

	ret = parse_capture_list(capture, "CaptureArguments",
				 &c->capture_arguments);
	if (!ret)
		ret = parse_capture_list(capture, "CaptureLocals",
					 &c->capture_locals);
	if (ret)
		return ret;
	c->capture_return = safe_bool(json_object_get(capture, "CaptureReturn"),
				      false);
	c->capture_stack = safe_bool(json_object_get(capture,
						     "CaptureStackTrace"),
				     false);

	c->limits.max_string = clamp_limit(limits, "MaxStringLength", LIMIT_MIN,
					   MAX_STRING_MAX, MAX_STRING_DEFAULT);
	c->limits.max_width = clamp_limit(limits, "MaxCollectionWidth",
					  LIMIT_MIN, MAX_WIDTH_MAX,
					  MAX_WIDTH_DEFAULT);
	c->limits.max_collection_depth =
		clamp_limit(limits, "MaxCollectionDepth", LIMIT_MIN,
			    MAX_COLLECTION_DEPTH_MAX,
			    MAX_COLLECTION_DEPTH_DEFAULT);
	c->limits.max_object_depth = clamp_limit(limits, "MaxObjectDepth",
						 LIMIT_MIN,
						 MAX_OBJECT_DEPTH_MAX,
						 MAX_OBJECT_DEPTH_DEFAULT);
	c->limits.max_fields = clamp_limit(limits, "MaxFieldsPerObject",
					   LIMIT_MIN, MAX_FIELDS_MAX,
					   MAX_FIELDS_DEFAULT);
	c->limits.max_frames = clamp_limit(limits, "MaxStackFrames", LIMIT_MIN,
					   MAX_FRAMES_MAX, MAX_FRAMES_DEFAULT);
	c->limits.max_stack_trace_size =
		clamp_limit(limits, "MaxStackTraceSize", LIMIT_MIN,
			    MAX_STACK_TRACE_SIZE_MAX,
			    MAX_STACK_TRACE_SIZE_DEFAULT);
	/* MaxHits bounds a temporary BREAKPOINT only; a PROBE is permanent. */
	c->limits.max_hits = c->kind == PROBE_KIND_PROBE ? 0 :
		clamp_limit(limits, "MaxHits", MAX_HITS_MIN, MAX_HITS_MAX,
			    MAX_HITS_DEFAULT);
	return 0;
}

/* LocationHash as ADOT's str() would give it for a string or an integer;
 * otherwise (absent, empty, other types) an id derived from the content, so
 * that a local config without one still has a stable identity. */
static int parse_id(const json_t *cfg, struct probe_config *c, char *err,
		    size_t err_len)
{
	const json_t *v = json_object_get(cfg, "LocationHash");

	if (json_is_string(v) && json_string_length(v))
		return copy_string(c->id, sizeof(c->id), v, "LocationHash",
				   err, err_len);
	if (json_is_integer(v)) {
		snprintf(c->id, sizeof(c->id), "%lld",
			 (long long)json_integer_value(v));
		return 0;
	}
	snprintf(c->id, sizeof(c->id), "cfg-%s", c->fingerprint);
	return 0;
}

static int parse_object(const json_t *cfg, struct probe_config *c, char *err,
			size_t err_len)
{
	const json_t *v;
	int ret;

	ret = fingerprint(cfg, c->fingerprint);
	if (ret) {
		set_err(err, err_len, "out of memory");
		return ret;
	}
	ret = parse_id(cfg, c, err, err_len);
	if (ret)
		return ret;

	/* str(InstrumentationType).upper(); anything else is a BREAKPOINT. */
	v = json_object_get(cfg, "InstrumentationType");
	c->kind = json_is_string(v) && json_string_length(v) == 5 &&
		  !strcasecmp(json_string_value(v), "PROBE") ?
		  PROBE_KIND_PROBE : PROBE_KIND_BREAKPOINT;

	v = json_object_get(cfg, "InstrumentationName");
	if (json_is_string(v)) {
		ret = copy_string(c->name, sizeof(c->name), v,
				  "InstrumentationName", err, err_len);
		if (ret)
			return ret;
	}

	ret = parse_location(cfg, c, err, err_len);
	if (ret)
		return ret;
	ret = parse_capture(cfg, c);
	if (ret) {
		set_err(err, err_len, "out of memory");
		return ret;
	}
	c->rate = CAPTURES_PER_SECOND_DEFAULT;
	/* A PROBE is permanent: ExpiresAt does not apply. */
	if (c->kind == PROBE_KIND_BREAKPOINT)
		c->expires_at_ms = parse_expires_at(json_object_get(cfg,
								    "ExpiresAt"));
	ret = parse_attribute_filters(json_object_get(cfg, "AttributeFilters"),
				      &c->attribute_filters);
	if (ret) {
		set_err(err, err_len, "out of memory");
		return ret;
	}

	ret = optional_string(cfg, "Service", c->service, sizeof(c->service),
			      err, err_len);
	if (!ret)
		ret = optional_string(cfg, "Environment", c->environment,
				      sizeof(c->environment), err, err_len);
	if (ret)
		return ret;
	v = json_object_get(cfg, "Pid");
	if (v && !json_is_null(v)) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 ||
		    json_integer_value(v) > INT_MAX) {
			set_err(err, err_len,
				"Pid must be a process id (a non-negative integer)");
			return -EINVAL;
		}
		c->pid = (int)json_integer_value(v);
	}
	/* pydi's Rate: snapshots per second, 0 for no limit (ADOT has none). */
	v = json_object_get(cfg, "Rate");
	if (v && !json_is_null(v)) {
		if (!json_is_number(v) || json_number_value(v) < 0 ||
		    json_number_value(v) > 1e9) {
			set_err(err, err_len,
				"Rate must be snapshots per second (a number >= 0; 0: no limit)");
			return -EINVAL;
		}
		c->rate = json_number_value(v);
	}
	return 0;
}

int probe_config_parse(const json_t *j, struct probe_config *c, char *err,
		       size_t err_len)
{
	json_t *parsed = NULL;
	char reason[256] = "";
	int ret;

	memset(c, 0, sizeof(*c));
	if (!j) {
		set_err(err, err_len, "no configuration");
		return -EINVAL;
	}
	/* The DI API's ConfigurationData may carry the object as a string. */
	if (json_is_string(j)) {
		json_error_t jerr;

		parsed = json_loadb(json_string_value(j), json_string_length(j),
				    0, &jerr);
		if (!parsed) {
			set_err(err, err_len,
				"configuration string is not JSON (line %d, column %d): %s",
				jerr.line, jerr.column, jerr.text);
			return -EINVAL;
		}
		j = parsed;
	}
	if (!json_is_object(j)) {
		set_err(err, err_len, "a configuration must be a JSON object");
		json_decref(parsed);
		return -EINVAL;
	}
	ret = parse_object(j, c, reason, sizeof(reason));
	json_decref(parsed);
	if (ret) {
		/* Name the config, so that a log line says which one. */
		if (c->id[0])
			set_err(err, err_len, "config %s: %s", c->id, reason);
		else
			set_err(err, err_len, "%s", reason);
		probe_config_free(c);
	}
	return ret;
}

void probe_config_free(struct probe_config *c)
{
	if (!c)
		return;
	json_decref(c->capture_arguments);
	json_decref(c->capture_locals);
	json_decref(c->attribute_filters);
	c->capture_arguments = NULL;
	c->capture_locals = NULL;
	c->attribute_filters = NULL;
}

void probe_config_target(const struct probe_config *c, char *out,
			 size_t out_len)
{
	if (!out || !out_len)
		return;
	if (c->line > 0)
		snprintf(out, out_len, "%s:%s@%d", c->module, c->function,
			 c->line);
	else
		snprintf(out, out_len, "%s:%s", c->module, c->function);
}

/*
 * Python's == between a resource attribute (absent = None) and a filter
 * value: numbers compare by value across int/float/bool (True == 1 == 1.0),
 * strings byte for byte, containers as jansson compares them.
 */
static bool py_equal(const json_t *attr, const json_t *want)
{
	bool attr_num, want_num;

	if (!attr)
		return json_is_null(want);
	attr_num = json_is_number(attr) || json_is_boolean(attr);
	want_num = json_is_number(want) || json_is_boolean(want);
	if (attr_num && want_num) {
		const json_t *a = attr, *b = want;
		json_int_t ia, ib;

		if (json_is_real(a)) {	/* at most one side real below */
			const json_t *t = a;

			a = b;
			b = t;
		}
		ia = json_is_boolean(a) ? json_is_true(a) :
		     json_is_integer(a) ? json_integer_value(a) : 0;
		if (json_is_real(a))	/* both real */
			return json_real_value(a) == json_real_value(b);
		if (json_is_real(b)) {
			double d = json_real_value(b);

			/* int == float holds only for an integral float */
			if (!is_whole(d))
				return false;
			return (json_int_t)d == ia;
		}
		ib = json_is_boolean(b) ? json_is_true(b) : json_integer_value(b);
		return ia == ib;
	}
	return json_equal(attr, want);
}

/*
 * ADOT's rule (_debugger_client._matches_attribute_filters): no filters
 * (NULL) matches every process; otherwise at least one filter object must
 * match, and an object matches when, for every one of its non-empty keys,
 * the process's resource attribute equals the filter's value (an absent
 * attribute equals only null). An object with no non-empty key matches
 * nothing, so [] and [{}] match no process.
 */
bool probe_config_matches_attrs(const struct probe_config *c,
				const json_t *resource_attrs)
{
	const json_t *filter, *want;
	const char *key;
	size_t i;

	if (!c->attribute_filters)
		return true;
	json_array_foreach(c->attribute_filters, i, filter) {
		size_t checked = 0;
		bool all = true;

		json_object_foreach((json_t *)filter, key, want) {
			if (!*key)
				continue;
			checked++;
			if (!py_equal(json_object_get(resource_attrs, key),
				      want)) {
				all = false;
				break;
			}
		}
		if (checked && all)
			return true;
	}
	return false;
}
