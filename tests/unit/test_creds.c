/* SPDX-License-Identifier: MIT */
/* test_creds.c: the INI parser, environment precedence and creds_load
 * against temporary files, including what the error messages say (the
 * file and profile) and never say (the secret). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "creds.h"
#include "testhelp.h"

#define SECRET_FILE "FileSecretKey0123456789"
#define SECRET_ENV "EnvSecretKey9876543210"

static char tmpdir[] = "/tmp/ncloudfs-creds-XXXXXX";

/* Parses a copy with no NUL after it, so ASan sees any read past len. */
static int parse(struct ncp_creds *c, const char *text, const char *section)
{
	size_t len = strlen(text);
	char *copy = malloc(len ? len : 1);
	int rc;

	memcpy(copy, text, len);
	rc = creds_parse_ini(c, copy, len, section);
	free(copy);
	return rc;
}

static void test_parse(void)
{
	struct ncp_creds c = { 0 };

	CHECK(parse(&c,
		    "[DEFAULT]\n"
		    "ncloud_access_key_id = AK1\n"
		    "ncloud_secret_access_key = SK1\n"
		    "ncloud_api_url = https://ncloud.apigw.ntruss.com\n"
		    "[project]\n"
		    "ncloud_access_key_id = AK2\n"
		    "ncloud_secret_access_key = SK2\n",
		    "DEFAULT") == 0);
	CHECK_STR(c.access_key, "AK1");
	CHECK_STR(c.secret_key, "SK1");
	CHECK_STR(c.api_url, "https://ncloud.apigw.ntruss.com");
	creds_release(&c);
	CHECK(!c.access_key && !c.secret_key && !c.api_url);

	/* named profile; keys of other sections do not leak in */
	CHECK(parse(&c,
		    "[DEFAULT]\nncloud_access_key_id = AK1\nncloud_api_url = https://a\n"
		    "[project]\nncloud_access_key_id = AK2\nncloud_secret_access_key = SK2\n"
		    "[other]\nncloud_api_url = https://other\n",
		    "project") == 0);
	CHECK_STR(c.access_key, "AK2");
	CHECK_STR(c.secret_key, "SK2");
	CHECK(c.api_url == NULL);
	creds_release(&c);

	/* comments, blank lines, tabs, CRLF, no spaces round '=', no final newline */
	CHECK(parse(&c,
		    "# written by ncloud configure\r\n"
		    "; another comment\r\n"
		    "\r\n"
		    "  [ DEFAULT ]  \r\n"
		    "\tncloud_access_key_id\t=\t AK3 \t\r\n"
		    "#ncloud_secret_access_key = commented\r\n"
		    "ncloud_secret_access_key=SK3=with=equals\r\n"
		    "unrelated_key = x\r\n"
		    "ncloud_api_url = https://b/ \r",
		    "DEFAULT") == 0);
	CHECK_STR(c.access_key, "AK3");
	CHECK_STR(c.secret_key, "SK3=with=equals");
	CHECK_STR(c.api_url, "https://b/");
	creds_release(&c);

	/* missing keys: the section is there, the fields stay NULL */
	CHECK(parse(&c, "[DEFAULT]\nncloud_access_key_id = AK4\nncloud_secret_access_key =\n",
		    "DEFAULT") == 0);
	CHECK_STR(c.access_key, "AK4");
	CHECK(c.secret_key == NULL);
	CHECK(c.api_url == NULL);
	creds_release(&c);

	/* missing section */
	CHECK(parse(&c, "[DEFAULT]\nncloud_access_key_id = AK\n", "nope") == 1);
	CHECK(c.access_key == NULL);
	CHECK(parse(&c, "", "DEFAULT") == 1);
	CHECK(parse(&c, "ncloud_access_key_id = AK\n", "DEFAULT") == 1);
	CHECK(c.access_key == NULL);
	/* section names are exact */
	CHECK(parse(&c, "[Project]\nncloud_access_key_id = AK\n", "project") == 1);
	CHECK(parse(&c, "[proj]\nncloud_access_key_id = AK\n", "project") == 1);

	/* a malformed header ends the section before it */
	CHECK(parse(&c,
		    "[DEFAULT]\nncloud_access_key_id = AK5\n[broken\n"
		    "ncloud_secret_access_key = SK5\n",
		    "DEFAULT") == 0);
	CHECK_STR(c.access_key, "AK5");
	CHECK(c.secret_key == NULL);
	creds_release(&c);

	/* later values replace earlier ones; a BOM is skipped */
	CHECK(parse(&c,
		    "\xef\xbb\xbf[DEFAULT]\nncloud_access_key_id = OLD\n"
		    "ncloud_access_key_id = NEW\n",
		    "DEFAULT") == 0);
	CHECK_STR(c.access_key, "NEW");
	creds_release(&c);

	/* values already in c survive when the section lacks them */
	c.access_key = strdup("KEEP");
	CHECK(parse(&c, "[DEFAULT]\nncloud_secret_access_key = S\n", "DEFAULT") == 0);
	CHECK_STR(c.access_key, "KEEP");
	CHECK_STR(c.secret_key, "S");
	creds_release(&c);

	/* keys are case-sensitive; lines without '=' are ignored */
	CHECK(parse(&c, "[DEFAULT]\nNCLOUD_ACCESS_KEY_ID = AK\njunk line\n", "DEFAULT") == 0);
	CHECK(c.access_key == NULL);
	creds_release(&c);

	/* a NUL inside the text is bounded by len, not by the terminator */
	CHECK(creds_parse_ini(&c, "[DEFAULT]\nncloud_access_key_id = A\0B\n", 37, "DEFAULT") == 0);
	CHECK_STR(c.access_key, "A");
	creds_release(&c);

	CHECK(creds_parse_ini(&c, NULL, 0, "DEFAULT") == 1);
	CHECK(creds_parse_ini(&c, NULL, 5, "DEFAULT") == -1);
	CHECK(creds_parse_ini(&c, "", 0, NULL) == -1);
	creds_release(NULL);
}

static void clear_env(void)
{
	unsetenv("NCLOUD_ACCESS_KEY_ID");
	unsetenv("NCLOUD_SECRET_ACCESS_KEY");
	unsetenv("NCLOUD_ACCESS_KEY");
	unsetenv("NCLOUD_SECRET_KEY");
	unsetenv("NCLOUD_PROFILE");
}

static char *write_file(const char *name, const char *text)
{
	size_t n = strlen(tmpdir) + strlen(name) + 2;
	char *path = malloc(n);
	FILE *f;

	snprintf(path, n, "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	if (f) {
		fputs(text, f);
		fclose(f);
	}
	chmod(path, 0600); /* as `ncloud configure` leaves it; others are refused */
	return path;
}

static const char config_text[] = "[DEFAULT]\n"
				  "ncloud_access_key_id = FileAccessDefault\n"
				  "ncloud_secret_access_key = " SECRET_FILE "\n"
				  "ncloud_api_url = https://ncloud.apigw.ntruss.com\n"
				  "\n"
				  "[gov]\n"
				  "ncloud_access_key_id = FileAccessGov\n"
				  "ncloud_secret_access_key = " SECRET_FILE "Gov\n"
				  "ncloud_api_url = https://ncloud.apigw.gov-ntruss.com\n";

/* Messages may name files and profiles, never a secret. */
static void check_no_secret(const char *msg)
{
	CHECK(strstr(msg, SECRET_FILE) == NULL);
	CHECK(strstr(msg, SECRET_ENV) == NULL);
}

/* A file that group or others may read or write is refused, by name. */
static void test_load_mode(const char *path)
{
	static const mode_t bad[] = { 0644, 0640, 0604, 0620, 0602 };
	struct ncp_creds c;
	char err[512];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		chmod(path, bad[i]);
		CHECK(creds_load(&c, path, NULL, err, sizeof(err)) == -1);
		CHECK(strstr(err, path) != NULL);
		CHECK(strstr(err, "chmod 600") != NULL);
		check_no_secret(err);
		CHECK(c.secret_key == NULL);
	}
	chmod(path, 0400);
	CHECK(creds_load(&c, path, NULL, err, sizeof(err)) == 0);
	creds_release(&c);
	chmod(path, 0600);
}

static void test_load_file(const char *path)
{
	struct ncp_creds c;
	char err[1024], want[1200];

	clear_env();
	CHECK(creds_load(&c, path, NULL, err, sizeof(err)) == 0);
	CHECK_STR(c.access_key, "FileAccessDefault");
	CHECK_STR(c.secret_key, SECRET_FILE);
	CHECK_STR(c.api_url, "https://ncloud.apigw.ntruss.com");
	CHECK(strstr(c.where, path) != NULL);
	CHECK(strstr(c.where, "[DEFAULT]") != NULL);
	CHECK_STR(err, "");
	/* where the keys came from, for messages about them */
	snprintf(want, sizeof(want), "the keys came from %s [DEFAULT]", path);
	CHECK_STR(c.from, want);
	creds_release(&c);

	/* profile argument, then $NCLOUD_PROFILE, the argument winning */
	CHECK(creds_load(&c, path, "gov", err, sizeof(err)) == 0);
	CHECK_STR(c.access_key, "FileAccessGov");
	CHECK_STR(c.api_url, "https://ncloud.apigw.gov-ntruss.com");
	creds_release(&c);
	setenv("NCLOUD_PROFILE", "gov", 1);
	CHECK(creds_load(&c, path, NULL, err, sizeof(err)) == 0);
	CHECK_STR(c.access_key, "FileAccessGov");
	creds_release(&c);
	CHECK(creds_load(&c, path, "DEFAULT", err, sizeof(err)) == 0);
	CHECK_STR(c.access_key, "FileAccessDefault");
	creds_release(&c);

	/* a named profile the file lacks: the error names both */
	CHECK(creds_load(&c, path, "nosuch", err, sizeof(err)) == -1);
	CHECK(strstr(err, "nosuch") != NULL);
	CHECK(strstr(err, path) != NULL);
	CHECK(c.access_key == NULL && c.secret_key == NULL && c.api_url == NULL);
	check_no_secret(err);
	setenv("NCLOUD_PROFILE", "fromenv", 1);
	CHECK(creds_load(&c, path, NULL, err, sizeof(err)) == -1);
	CHECK(strstr(err, "fromenv") != NULL);
	creds_release(&c);
	clear_env();
}

static void test_load_env(const char *path)
{
	struct ncp_creds c;
	char err[1024], want[1200];

	/* the environment wins; api_url still comes from the file */
	clear_env();
	setenv("NCLOUD_ACCESS_KEY_ID", "EnvAccess1", 1);
	setenv("NCLOUD_SECRET_ACCESS_KEY", SECRET_ENV, 1);
	CHECK(creds_load(&c, path, NULL, err, sizeof(err)) == 0);
	CHECK_STR(c.access_key, "EnvAccess1");
	CHECK_STR(c.secret_key, SECRET_ENV);
	CHECK_STR(c.api_url, "https://ncloud.apigw.ntruss.com");
	CHECK_STR(c.from, "the keys came from NCLOUD_ACCESS_KEY_ID and NCLOUD_SECRET_ACCESS_KEY");
	creds_release(&c);

	/* the first pair beats the second */
	setenv("NCLOUD_ACCESS_KEY", "EnvAccess2", 1);
	setenv("NCLOUD_SECRET_KEY", "EnvSecret2", 1);
	CHECK(creds_load(&c, path, NULL, err, sizeof(err)) == 0);
	CHECK_STR(c.access_key, "EnvAccess1");
	CHECK_STR(c.secret_key, SECRET_ENV);
	creds_release(&c);

	/* the second pair alone */
	unsetenv("NCLOUD_ACCESS_KEY_ID");
	unsetenv("NCLOUD_SECRET_ACCESS_KEY");
	CHECK(creds_load(&c, path, NULL, err, sizeof(err)) == 0);
	CHECK_STR(c.access_key, "EnvAccess2");
	CHECK_STR(c.secret_key, "EnvSecret2");
	creds_release(&c);

	/* an empty variable counts as unset */
	setenv("NCLOUD_ACCESS_KEY_ID", "", 1);
	CHECK(creds_load(&c, path, NULL, err, sizeof(err)) == 0);
	CHECK_STR(c.access_key, "EnvAccess2");
	creds_release(&c);

	/* key by key: access key from the environment, secret from the file */
	clear_env();
	setenv("NCLOUD_ACCESS_KEY", "EnvAccess3", 1);
	CHECK(creds_load(&c, path, "gov", err, sizeof(err)) == 0);
	CHECK_STR(c.access_key, "EnvAccess3");
	CHECK_STR(c.secret_key, SECRET_FILE "Gov");
	CHECK_STR(c.api_url, "https://ncloud.apigw.gov-ntruss.com");
	snprintf(want, sizeof(want),
		 "the access key came from NCLOUD_ACCESS_KEY, the secret key from %s [gov]", path);
	CHECK_STR(c.from, want);
	creds_release(&c);
	clear_env();
}

static void test_load_missing(const char *path)
{
	struct ncp_creds c;
	char err[1024], *missing, *partial, *noapi;

	missing = write_file("absent", "");
	unlink(missing);

	/* nothing anywhere: say where we looked */
	clear_env();
	CHECK(creds_load(&c, missing, NULL, err, sizeof(err)) == -1);
	CHECK(strncmp(err,
		      "no NCP credentials found: looked in environment "
		      "(NCLOUD_ACCESS_KEY_ID/NCLOUD_SECRET_ACCESS_KEY, "
		      "NCLOUD_ACCESS_KEY/NCLOUD_SECRET_KEY) and ",
		      strlen("no NCP credentials found: looked in environment "
			     "(NCLOUD_ACCESS_KEY_ID/NCLOUD_SECRET_ACCESS_KEY, "
			     "NCLOUD_ACCESS_KEY/NCLOUD_SECRET_KEY) and ")) == 0);
	CHECK(strstr(err, missing) != NULL);
	CHECK(strstr(err, "not found") != NULL);
	CHECK(strstr(c.where, missing) != NULL);

	/* a missing file is fine when the environment has both keys, even
	 * with a profile named */
	setenv("NCLOUD_ACCESS_KEY_ID", "EnvAccess", 1);
	setenv("NCLOUD_SECRET_ACCESS_KEY", SECRET_ENV, 1);
	CHECK(creds_load(&c, missing, "project", err, sizeof(err)) == 0);
	CHECK_STR(c.access_key, "EnvAccess");
	CHECK(c.api_url == NULL);
	creds_release(&c);

	/* a file with the section but only half the keys */
	clear_env();
	partial = write_file("partial", "[DEFAULT]\nncloud_secret_access_key = " SECRET_FILE "\n");
	CHECK(creds_load(&c, partial, NULL, err, sizeof(err)) == -1);
	CHECK(strstr(err, "access key") != NULL);
	CHECK(strstr(err, partial) != NULL);
	CHECK(c.secret_key == NULL);
	check_no_secret(err);
	check_no_secret(c.where);
	setenv("NCLOUD_SECRET_KEY", SECRET_ENV, 1);
	CHECK(creds_load(&c, partial, NULL, err, sizeof(err)) == -1);
	check_no_secret(err);
	clear_env();
	setenv("NCLOUD_ACCESS_KEY", "EnvAccess", 1);
	CHECK(creds_load(&c, partial, NULL, err, sizeof(err)) == 0);
	CHECK_STR(c.secret_key, SECRET_FILE);
	creds_release(&c);
	clear_env();

	/* DEFAULT missing from an existing file is only "not found" */
	noapi = write_file("onlygov", "[gov]\nncloud_access_key_id = X\n");
	CHECK(creds_load(&c, noapi, NULL, err, sizeof(err)) == -1);
	CHECK(strstr(err, "no NCP credentials found") != NULL);
	CHECK(strstr(err, noapi) != NULL);

	/* a file that is there but cannot be read: the error names it */
	CHECK(creds_load(&c, tmpdir, NULL, err, sizeof(err)) == -1);
	CHECK(strstr(err, tmpdir) != NULL);
	if (geteuid() != 0) { /* root reads anything */
		chmod(path, 0);
		CHECK(creds_load(&c, path, NULL, err, sizeof(err)) == -1);
		CHECK(strstr(err, path) != NULL);
		chmod(path, 0600);
	}

	/* errbuf may be NULL */
	CHECK(creds_load(&c, missing, NULL, NULL, 0) == -1);
	unlink(partial);
	unlink(noapi);
	free(missing);
	free(partial);
	free(noapi);
}

static void test_load_big(void)
{
	struct ncp_creds c;
	char err[1024], *path;
	size_t n = 1024 * 1024 + 1;
	char *text = malloc(n + 1);

	memset(text, '#', n);
	text[n] = '\0';
	path = write_file("big", text);
	CHECK(creds_load(&c, path, NULL, err, sizeof(err)) == -1);
	CHECK(strstr(err, path) != NULL);
	CHECK(strstr(err, "1 MiB") != NULL);

	/* exactly 1 MiB is fine */
	memcpy(text, "[DEFAULT]\nncloud_access_key_id=A\nncloud_secret_access_key=S\n#", 61);
	text[n - 1] = '\0';
	free(path);
	path = write_file("big", text);
	CHECK(creds_load(&c, path, NULL, err, sizeof(err)) == 0);
	CHECK_STR(c.secret_key, "S");
	creds_release(&c);
	unlink(path);
	free(path);
	free(text);
}

static void test_load_home(void)
{
	struct ncp_creds c;
	char err[1024], dir[512], *path;
	const char *old = getenv("HOME");
	char *saved = old ? strdup(old) : NULL;

	snprintf(dir, sizeof(dir), "%s/.ncloud", tmpdir);
	mkdir(dir, 0700);
	path = write_file(".ncloud/configure", config_text);
	setenv("HOME", tmpdir, 1);
	CHECK(creds_load(&c, NULL, NULL, err, sizeof(err)) == 0);
	CHECK_STR(c.access_key, "FileAccessDefault");
	CHECK(strstr(c.where, "/.ncloud/configure") != NULL);
	creds_release(&c);
	unlink(path);
	rmdir(dir);
	CHECK(creds_load(&c, NULL, NULL, err, sizeof(err)) == -1);
	CHECK(strstr(err, path) != NULL);
	if (saved)
		setenv("HOME", saved, 1);
	else
		unsetenv("HOME");
	free(saved);
	free(path);
}

int main(void)
{
	char *path;

	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 1;
	}
	test_parse();
	path = write_file("configure", config_text);
	test_load_file(path);
	test_load_mode(path);
	test_load_env(path);
	test_load_missing(path);
	test_load_big();
	test_load_home();
	unlink(path);
	free(path);
	rmdir(tmpdir);
	return TEST_REPORT();
}
