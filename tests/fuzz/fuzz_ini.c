/* SPDX-License-Identifier: MIT */
/* fuzz_ini.c: libFuzzer target for creds_parse_ini, the reader of the
 * credentials file. Parses the input for [DEFAULT] and for the section its
 * first line names, then once more over the first result so keys replace
 * keys. Every key found must be a whole, trimmed, non-empty value from the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "creds.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Whether v occurs in the input as a whole value: after '=' or a blank, and
 * before a blank, a line end, a NUL (text ends there, as test_creds expects)
 * or the end of the input. */
static int whole_value(const uint8_t *data, size_t size, const char *v, size_t n)
{
	const uint8_t *p = data, *end = data + size, *at;

	while ((at = memmem(p, (size_t)(end - p), v, n)) != NULL) {
		const uint8_t *after = at + n;

		if (at > data && (at[-1] == '=' || is_blank((char)at[-1])) &&
		    (after == end || *after == '\n' || *after == '\0' || is_blank((char)*after)))
			return 1;
		p = at + 1;
	}
	return 0;
}

static void check_value(const char *v, const uint8_t *data, size_t size)
{
	size_t n;

	if (!v)
		return;
	n = strlen(v);
	if (n == 0 || n > size || is_blank(v[0]) || is_blank(v[n - 1]) || memchr(v, '\n', n) ||
	    !whole_value(data, size, v, n))
		abort();
}

static void check_creds(const struct ncp_creds *c, int rc, const uint8_t *data, size_t size)
{
	if (rc < -1 || rc > 1)
		abort();
	/* Keys outside the section are never taken (c started empty). */
	if (rc == 1 && (c->access_key || c->secret_key || c->api_url))
		abort();
	check_value(c->access_key, data, size);
	check_value(c->secret_key, data, size);
	check_value(c->api_url, data, size);
}

/* The section the first line names: "[ name ]" gives "name" (and must then be
 * found), anything else is used whole, up to a NUL. Returns 1 when the line
 * is a well-formed header, so the section exists. */
static int first_section(const uint8_t *data, size_t size, char *name, size_t cap)
{
	const char *b = (const char *)data, *e;
	const char *nl;
	int header = 0;
	size_t n;

	if (size >= 3 && memcmp(b, "\xEF\xBB\xBF", 3) == 0)
		b += 3;
	nl = memchr(b, '\n', size - (size_t)(b - (const char *)data));
	e = nl ? nl : (const char *)data + size;
	while (b < e && is_blank(*b))
		b++;
	while (e > b && is_blank(e[-1]))
		e--;
	if (e - b >= 2 && b[0] == '[' && e[-1] == ']') {
		b++;
		e--;
		while (b < e && is_blank(*b))
			b++;
		while (e > b && is_blank(e[-1]))
			e--;
		header = !memchr(b, '\0', (size_t)(e - b));
	}
	n = (size_t)(e - b) < cap - 1 ? (size_t)(e - b) : cap - 1;
	memcpy(name, b, n);
	name[n] = '\0';
	return header && n == (size_t)(e - b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ncp_creds a = { 0 }, b = { 0 };
	const char *text = (const char *)data;
	char section[512];
	int header, rc;

	header = first_section(data, size, section, sizeof(section));

	rc = creds_parse_ini(&a, text, size, "DEFAULT");
	check_creds(&a, rc, data, size);

	rc = creds_parse_ini(&b, text, size, section);
	check_creds(&b, rc, data, size);
	if (header && rc == 1)
		abort();

	/* Over a filled struct: found keys replace the old ones (no leak). */
	rc = creds_parse_ini(&a, text, size, section);
	if (rc < -1 || rc > 1)
		abort();
	check_value(a.access_key, data, size);
	check_value(a.secret_key, data, size);
	check_value(a.api_url, data, size);

	creds_release(&a);
	creds_release(&b);
	if (a.access_key || a.secret_key || a.api_url)
		abort();
	creds_release(&a); /* twice is fine */
	return 0;
}
