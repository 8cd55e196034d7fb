/* SPDX-License-Identifier: MIT */
/* creds.c: finding the NCP access key, secret key and API URL.
 *
 * The environment wins key by key; the INI file written by `ncloud configure`
 * fills what the environment lacks and alone gives ncloud_api_url. Messages
 * name the places looked at, never the secret, which is wiped on release. */
#include "creds.h"

#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#define CREDS_FILE_MAX (1024 * 1024)
#define CREDS_ENV_DESC                                                 \
	"environment (NCLOUD_ACCESS_KEY_ID/NCLOUD_SECRET_ACCESS_KEY, " \
	"NCLOUD_ACCESS_KEY/NCLOUD_SECRET_KEY)"

static void wipe_free(char *s)
{
	if (s) {
		OPENSSL_cleanse(s, strlen(s));
		free(s);
	}
}

static int is_blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

static void trim(const char **b, const char **e)
{
	while (*b < *e && is_blank(**b))
		(*b)++;
	while (*e > *b && is_blank((*e)[-1]))
		(*e)--;
}

static int range_equals(const char *b, const char *e, const char *s)
{
	size_t n = strlen(s);

	return (size_t)(e - b) == n && memcmp(b, s, n) == 0;
}

/* Replaces *slot with a copy of [b, e); the old value is wiped. */
static int set_value(char **slot, const char *b, const char *e)
{
	char *v = malloc((size_t)(e - b) + 1);

	if (!v)
		return -1;
	memcpy(v, b, (size_t)(e - b));
	v[e - b] = '\0';
	wipe_free(*slot);
	*slot = v;
	return 0;
}

int creds_parse_ini(struct ncp_creds *c, const char *text, size_t len, const char *section)
{
	const char *p = text, *end = text + len;
	int in_section = 0, found = 0;

	if (!c || !section || (!text && len))
		return -1;
	if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) /* UTF-8 BOM from Windows editors */
		p += 3;
	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *b = p, *e = nl ? nl : end, *eq, *kb, *ke, *vb, *ve, *nul;
		char **slot;

		p = nl ? nl + 1 : end;
		trim(&b, &e);
		if (b == e || *b == '#' || *b == ';')
			continue;
		if (*b == '[') {
			/* A malformed header still ends the previous section, so its
			 * keys cannot leak into the one before it. */
			in_section = 0;
			if (e - b >= 2 && e[-1] == ']') {
				kb = b + 1;
				ke = e - 1;
				trim(&kb, &ke);
				in_section = range_equals(kb, ke, section);
				found |= in_section;
			}
			continue;
		}
		if (!in_section)
			continue;
		eq = memchr(b, '=', (size_t)(e - b));
		if (!eq)
			continue;
		kb = b;
		ke = eq;
		vb = eq + 1;
		ve = e;
		trim(&kb, &ke);
		trim(&vb, &ve);
		if (range_equals(kb, ke, "ncloud_access_key_id"))
			slot = &c->access_key;
		else if (range_equals(kb, ke, "ncloud_secret_access_key"))
			slot = &c->secret_key;
		else if (range_equals(kb, ke, "ncloud_api_url"))
			slot = &c->api_url;
		else
			continue;
		/* The value ends at a NUL byte, as a C string would: cut it
		 * there, so that what is kept is all text (and all wiped). */
		nul = memchr(vb, '\0', (size_t)(ve - vb));
		if (nul) {
			ve = nul;
			trim(&vb, &ve);
		}
		if (vb == ve) /* an empty value is as good as none */
			continue;
		if (set_value(slot, vb, ve) < 0)
			return -1;
	}
	return found ? 0 : 1;
}

void creds_release(struct ncp_creds *c)
{
	if (!c)
		return;
	wipe_free(c->secret_key);
	free(c->access_key);
	free(c->api_url);
	c->secret_key = NULL;
	c->access_key = NULL;
	c->api_url = NULL;
}

static const char *env_nonempty(const char *name)
{
	const char *v = getenv(name);

	return v && *v ? v : NULL;
}

static const char *env_first(const char *a, const char *b)
{
	const char *v = env_nonempty(a);

	return v ? v : env_nonempty(b);
}

/* $HOME/.ncloud/configure, or the password database's home when HOME is
 * unset (daemons started by init often have no HOME). Returns malloc'd. */
static char *default_path(void)
{
	const char *home = env_nonempty("HOME");
	struct passwd pw, *res = NULL;
	char pwbuf[4096];
	char *path;
	size_t n;

	if (!home) {
		if (getpwuid_r(getuid(), &pw, pwbuf, sizeof(pwbuf), &res) != 0 || !res ||
		    !res->pw_dir || !*res->pw_dir)
			return NULL;
		home = res->pw_dir;
	}
	n = strlen(home) + sizeof("/.ncloud/configure");
	path = malloc(n);
	if (path)
		snprintf(path, n, "%s/.ncloud/configure", home);
	return path;
}

/* Grows buf to newcap without leaving a copy of the secret in freed memory. */
static char *grow_wiped(char *buf, size_t len, size_t newcap)
{
	char *nb = malloc(newcap);

	if (nb && len)
		memcpy(nb, buf, len);
	if (buf) {
		OPENSSL_cleanse(buf, len);
		free(buf);
	}
	return nb;
}

/* Reads at most CREDS_FILE_MAX bytes. Returns 0, 1 when the file does not
 * exist, or -1 with a message in errbuf. */
static int read_capped(const char *path, char **text, size_t *len, char *errbuf, size_t errlen)
{
	struct stat st;
	char *buf = NULL;
	size_t n = 0, cap = 0;
	ssize_t r;
	int fd, err = -1;

	*text = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 1;
		snprintf(errbuf, errlen, "cannot read NCP configuration %s: %s", path,
			 strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(errbuf, errlen, "cannot read NCP configuration %s: not a regular file",
			 path);
		goto out;
	}
	/* It holds a secret: refuse it when others may read or change it, as ssh
	 * does with private keys. */
	if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) {
		snprintf(errbuf, errlen,
			 "NCP configuration %s is accessible by group or others (mode %03o); "
			 "run: chmod 600 %s",
			 path, (unsigned)(st.st_mode & 0777), path);
		goto out;
	}
	for (;;) {
		if (n == cap) {
			if (cap > CREDS_FILE_MAX) {
				snprintf(errbuf, errlen,
					 "NCP configuration %s is larger than 1 MiB", path);
				goto out;
			}
			cap = cap ? cap * 2 : 4096;
			if (cap > CREDS_FILE_MAX + 1)
				cap = CREDS_FILE_MAX + 1;
			buf = grow_wiped(buf, n, cap);
			if (!buf) {
				snprintf(errbuf, errlen, "cannot read NCP configuration %s: %s",
					 path, strerror(ENOMEM));
				n = 0;
				goto out;
			}
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(errbuf, errlen, "cannot read NCP configuration %s: %s", path,
				 strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*text = buf;
	*len = n;
	buf = NULL;
	err = 0;
out:
	if (buf) {
		OPENSSL_cleanse(buf, n);
		free(buf);
	}
	close(fd);
	return err;
}

void creds_scrub_env(void)
{
	static const char *const names[] = { "NCLOUD_SECRET_ACCESS_KEY", "NCLOUD_SECRET_KEY" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *v = getenv(names[i]);

		/* In place: /proc/PID/environ shows the process's original copy. */
		if (v)
			OPENSSL_cleanse(v, strlen(v));
		unsetenv(names[i]);
	}
}

/* Takes the value of a, else b; *name says which (NULL: neither set). */
static int take_env(char **slot, const char *a, const char *b, const char **name)
{
	const char *v = env_first(a, b);

	*name = v ? (env_nonempty(a) ? a : b) : NULL;
	if (v && !(*slot = strdup(v)))
		return -1;
	return 0;
}

int creds_load(struct ncp_creds *c, const char *config_path, const char *profile, char *errbuf,
	       size_t errlen)
{
	struct ncp_creds file = { 0 };
	const char *section, *ak_env = NULL, *sk_env = NULL;
	char *path = NULL, *text = NULL, place[600] = "";
	size_t len = 0;
	int rc, err = -1;

	if (errbuf && errlen)
		errbuf[0] = '\0';
	else
		errlen = 0;
	if (!c)
		return -1;
	memset(c, 0, sizeof(*c));

	if (take_env(&c->access_key, "NCLOUD_ACCESS_KEY_ID", "NCLOUD_ACCESS_KEY", &ak_env) < 0 ||
	    take_env(&c->secret_key, "NCLOUD_SECRET_ACCESS_KEY", "NCLOUD_SECRET_KEY", &sk_env) <
		    0) {
		snprintf(errbuf, errlen, "cannot load NCP credentials: %s", strerror(ENOMEM));
		goto out;
	}

	section = profile && *profile ? profile : env_nonempty("NCLOUD_PROFILE");
	if (!section)
		section = "DEFAULT";
	path = config_path ? strdup(config_path) : default_path();
	if (!path) {
		snprintf(c->where, sizeof(c->where), "%s and no configuration file (no home)",
			 CREDS_ENV_DESC);
		goto check;
	}

	snprintf(c->where, sizeof(c->where), "%s and %s [%s]", CREDS_ENV_DESC, path, section);
	snprintf(place, sizeof(place), "%s [%s]", path, section);
	rc = read_capped(path, &text, &len, errbuf, errlen);
	if (rc < 0)
		goto out;
	if (rc == 1) {
		snprintf(c->where, sizeof(c->where), "%s and %s [%s] (file not found)",
			 CREDS_ENV_DESC, path, section);
		goto check;
	}
	rc = creds_parse_ini(&file, text, len, section);
	if (rc < 0) {
		snprintf(errbuf, errlen, "cannot load NCP credentials: %s", strerror(ENOMEM));
		goto out;
	}
	if (rc == 1 && strcmp(section, "DEFAULT") != 0) {
		/* Asked for by name: silently using other keys would be worse. */
		snprintf(errbuf, errlen, "NCP profile [%s] not found in %s", section, path);
		goto out;
	}
	if (rc == 1)
		snprintf(c->where, sizeof(c->where), "%s and %s [%s] (no such section)",
			 CREDS_ENV_DESC, path, section);
	if (!c->access_key) {
		c->access_key = file.access_key;
		file.access_key = NULL;
	}
	if (!c->secret_key) {
		c->secret_key = file.secret_key;
		file.secret_key = NULL;
	}
	c->api_url = file.api_url;
	file.api_url = NULL;

check:
	if (!c->access_key && !c->secret_key)
		snprintf(errbuf, errlen, "no NCP credentials found: looked in %s", c->where);
	else if (!c->secret_key)
		snprintf(errbuf, errlen, "no NCP secret key found (access key found): looked in %s",
			 c->where);
	else if (!c->access_key)
		snprintf(errbuf, errlen, "no NCP access key found (secret key found): looked in %s",
			 c->where);
	else
		err = 0;
	if (!err && ak_env && sk_env)
		snprintf(c->from, sizeof(c->from), "the keys came from %s and %s", ak_env, sk_env);
	else if (!err && !ak_env && !sk_env)
		snprintf(c->from, sizeof(c->from), "the keys came from %s", place);
	else if (!err)
		snprintf(c->from, sizeof(c->from),
			 "the access key came from %s, the secret key from %s",
			 ak_env ? ak_env : place, sk_env ? sk_env : place);
out:
	if (err < 0)
		creds_release(c);
	creds_release(&file);
	if (text) {
		OPENSSL_cleanse(text, len);
		free(text);
	}
	free(path);
	return err;
}
