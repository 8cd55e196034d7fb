/* SPDX-License-Identifier: MIT */
/* replay.c: runs a libFuzzer target over files without libFuzzer, so that
 * `make check` replays the seed corpora with the ordinary compiler (and with
 * SANITIZE=...). Each argument is a file or a directory whose files are read,
 * one level deep, in name order. A failed input crashes the process. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REPLAY_FILE_MAX ((size_t)64 * 1024 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What to say if the input being run crashes the process: built before each
 * input, so that the signal handler only has to write it. */
static char crash_msg[4200];
static size_t crash_len;

static void on_crash(int sig)
{
	ssize_t r = write(STDERR_FILENO, crash_msg, crash_len);

	(void)r; /* best effort: nothing more can be done in a signal handler */
	signal(sig, SIG_DFL);
	raise(sig);
}

static void catch_crashes(void)
{
	static const int sigs[] = { SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL };

	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		signal(sigs[i], on_crash);
}

/* Reads the whole file into a buffer of exactly its size, so that a sanitizer
 * sees any read past the end. Returns 0, or -1 with a message printed. */
static int read_file(const char *path, uint8_t **data, size_t *size)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t n = 0;
	ssize_t r;
	int fd, err = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || (size_t)st.st_size > REPLAY_FILE_MAX) {
		fprintf(stderr, "replay: %s: unreadable or larger than 64 MiB\n", path);
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		fprintf(stderr, "replay: %s: out of memory\n", path);
		goto out;
	}
	while (n < (size_t)st.st_size) {
		r = read(fd, buf + n, (size_t)st.st_size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "replay: %s: %s\n", path,
				r ? strerror(errno) : "short read");
			goto out;
		}
		n += (size_t)r;
	}
	*data = buf;
	*size = n;
	buf = NULL;
	err = 0;
out:
	free(buf);
	close(fd);
	return err;
}

static int run_file(const char *path, unsigned long *count)
{
	uint8_t *data = NULL;
	size_t size = 0;
	int n;

	if (read_file(path, &data, &size) < 0)
		return -1;
	n = snprintf(crash_msg, sizeof(crash_msg), "replay: crashed on %s\n", path);
	crash_len = n > 0 ? (size_t)n : 0;
	if (crash_len >= sizeof(crash_msg))
		crash_len = sizeof(crash_msg) - 1;
	LLVMFuzzerTestOneInput(data, size);
	free(data);
	(*count)++;
	return 0;
}

/* Runs every regular file directly in dir; subdirectories are not entered. */
static int run_dir(const char *dir, unsigned long *count)
{
	struct dirent **names = NULL;
	struct stat st;
	char path[4096];
	int n, err = 0;

	n = scandir(dir, &names, NULL, alphasort);
	if (n < 0) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	for (int i = 0; i < n; i++) {
		const char *name = names[i]->d_name;

		if (err == 0 && name[0] != '.') {
			if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
				fprintf(stderr, "replay: %s/%s: path too long\n", dir, name);
				err = -1;
			} else if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
				err = run_file(path, count);
			}
		}
		free(names[i]);
	}
	free(names);
	return err;
}

int main(int argc, char **argv)
{
	unsigned long count = 0;
	struct stat st;
	int err;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 1;
	}
	catch_crashes();
	for (int i = 1; i < argc; i++) {
		if (stat(argv[i], &st) < 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		err = S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) : run_file(argv[i], &count);
		if (err < 0)
			return 1;
	}
	printf("replay: %lu inputs, 0 crashes\n", count);
	return 0;
}
