/* SPDX-License-Identifier: MIT */
/* creds.h: finding NCP credentials: environment first, then the INI file
 * written by `ncloud configure` (~/.ncloud/configure). */
#ifndef NCP_CREDS_H
#define NCP_CREDS_H

#include <stddef.h>

struct ncp_creds {
	char *access_key; /* owned; NULL when not found */
	char *secret_key; /* owned; wiped by creds_release */
	char *api_url;	  /* ncloud_api_url from the file's section, or NULL */
	char where[512];  /* human-readable list of places looked, for errors */
	char from[1100];  /* where the keys were found, for errors about them */
};

/* Loads credentials: NCLOUD_ACCESS_KEY_ID / NCLOUD_SECRET_ACCESS_KEY (else
 * NCLOUD_ACCESS_KEY / NCLOUD_SECRET_KEY), else the file at config_path (NULL:
 * $HOME/.ncloud/configure), section profile (NULL: $NCLOUD_PROFILE, else
 * DEFAULT). Returns 0 when both keys were found, -1 with a message in errbuf
 * otherwise (naming where it looked). api_url is read from the same file
 * section even when the keys come from the environment. On -1 the strings
 * are already released (where is kept); creds_release is safe either way. */
int creds_load(struct ncp_creds *c, const char *config_path, const char *profile, char *errbuf,
	       size_t errlen);

/* Parses INI text (pure, for tests and the fuzzer): fills c from section.
 * Keys found replace what c held; others are left alone. Returns 0 when the
 * section exists, 1 when it does not, -1 when out of memory. */
int creds_parse_ini(struct ncp_creds *c, const char *text, size_t len, const char *section);

/* Wipes the secret key from this process's environment (in place, so that
 * /proc/PID/environ no longer shows it) and removes the variables. */
void creds_scrub_env(void);

/* Frees the strings, wiping the secret first. */
void creds_release(struct ncp_creds *c);

#endif
