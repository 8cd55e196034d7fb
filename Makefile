# SPDX-License-Identifier: MIT
# ncloudfs: build, test, demo.  `make`, `make check`, `make demo`.
PREFIX ?= /usr/local
DESTDIR ?=
VERSION := 0.1.0

PKGS := fuse3 libcurl openssl jansson
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS))
PKG_LIBS := $(shell pkg-config --libs $(PKGS))

CC ?= cc
CFLAGS ?= -O2 -g
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wwrite-strings
ifeq ($(CI),true)
WARN += -Werror
endif
ifneq ($(SANITIZE),)
SAN := -fsanitize=$(SANITIZE) -fno-sanitize-recover=all -fno-omit-frame-pointer
endif
ALL_CFLAGS := -std=c11 -D_GNU_SOURCE -DNCLOUDFS_VERSION='"$(VERSION)"' $(WARN) $(SAN) \
	-Iclient -Ifs $(PKG_CFLAGS) $(CFLAGS)
ALL_LDFLAGS := $(SAN) $(LDFLAGS)
LIBS := $(PKG_LIBS) -lpthread -lm

CLIENT_SRC := $(wildcard client/*.c)
FS_SRC := $(filter-out fs/main.c,$(wildcard fs/*.c))
LIB_OBJ := $(CLIENT_SRC:.c=.o) $(FS_SRC:.c=.o)
UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_BIN := $(UNIT_SRC:.c=)
# The fake NCP source, the in-process libfuse replies and the model-based
# stress test (see tests/unit/).
UNIT_HELP := tests/unit/fakeapi.o tests/unit/fakefuse.o tests/unit/stress.o
PYTEST := /usr/bin/python3 -m pytest

.PHONY: all check unit e2e demo clean install bench fuzz fuzz-replay soak memcheck FORCE \
	format format-check
# tests/e2e/ncp_probe drives the client alone against the emulator (test_client.py).
all: ncloudfs tests/e2e/ncp_probe

# Objects are rebuilt when the flags change (e.g. SANITIZE=address,undefined).
.build-flags: FORCE
	@echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' | cmp -s - $@ || \
		echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' > $@

ncloudfs: fs/main.o $(LIB_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

%.o: %.c $(wildcard client/*.h fs/*.h) .build-flags
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

tests/e2e/ncp_probe: tests/e2e/ncp_probe.c $(CLIENT_SRC:.c=.o)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(CLIENT_SRC:.c=.o) $(LIBS)

tests/unit/%.o: tests/unit/%.c $(wildcard tests/unit/*.h client/*.h fs/*.h) .build-flags
	$(CC) $(ALL_CFLAGS) -Itests/unit -c -o $@ $<

tests/unit/test_%: tests/unit/test_%.c tests/unit/testhelp.h $(LIB_OBJ) $(UNIT_HELP)
	$(CC) $(ALL_CFLAGS) -Itests/unit $(ALL_LDFLAGS) -o $@ $< $(LIB_OBJ) $(UNIT_HELP) $(LIBS)

# Every allocation ncloudfs makes goes through a wrapper that can fail it.
tests/unit/test_oom: ALL_LDFLAGS += -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup
# test_fresh can refuse the cache its worker threads.
tests/unit/test_fresh: ALL_LDFLAGS += -Wl,--wrap=pthread_create
tests/unit/test_decode: ALL_LDFLAGS += -Wl,--wrap=pthread_create

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; (cd tests/unit && ./$$(basename $$t)); done

e2e: ncloudfs tests/e2e/ncp_probe
	$(PYTEST) -q --timeout=300 tests/e2e

check: format-check unit fuzz-replay e2e

C_SOURCES = $(wildcard client/*.[ch] fs/*.[ch] tests/unit/*.[ch] tests/fuzz/*.c tests/e2e/*.c)
format:
	clang-format -i $(C_SOURCES)
format-check:
	clang-format --dry-run --Werror $(C_SOURCES)

# Fuzzing (clang, libFuzzer): every parser has a target in tests/fuzz/;
# fuzz-replay runs their seed corpora without libFuzzer, as part of check.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SRC := $(CLIENT_SRC) fs/tree.c fs/log.c
fuzz-replay: $(FUZZ_TARGETS:%=tests/fuzz/replay_%)
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "== replay $$t"; tests/fuzz/replay_$$t tests/fuzz/corpus/$$t; done

# fuzz_ops runs the whole filesystem in-process (tests/unit/stress.c).
OPS_SRC := $(CLIENT_SRC) $(FS_SRC) tests/unit/fakeapi.c tests/unit/fakefuse.c tests/unit/stress.c
tests/fuzz/replay_ops: tests/fuzz/fuzz_ops.c tests/fuzz/replay.c $(OPS_SRC) .build-flags \
		$(wildcard client/*.h fs/*.h tests/unit/*.h)
	$(CC) $(ALL_CFLAGS) -Itests/unit $(ALL_LDFLAGS) -o $@ tests/fuzz/fuzz_ops.c \
		tests/fuzz/replay.c $(OPS_SRC) $(LIBS)

tests/fuzz/libfuzzer_ops: tests/fuzz/fuzz_ops.c $(OPS_SRC) $(wildcard client/*.h fs/*.h tests/unit/*.h)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all -Iclient -Ifs -Itests/unit $(PKG_CFLAGS) -o $@ \
		tests/fuzz/fuzz_ops.c $(OPS_SRC) $(LIBS)

tests/fuzz/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(FUZZ_SRC) .build-flags \
		$(wildcard client/*.h fs/*.h)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ tests/fuzz/fuzz_$*.c tests/fuzz/replay.c \
		$(FUZZ_SRC) $(LIBS)

tests/fuzz/libfuzzer_%: tests/fuzz/fuzz_%.c $(FUZZ_SRC) $(wildcard client/*.h fs/*.h)
	clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all \
		-Iclient -Ifs $(PKG_CFLAGS) -o $@ tests/fuzz/fuzz_$*.c $(FUZZ_SRC) $(LIBS)

fuzz: $(FUZZ_TARGETS:%=tests/fuzz/libfuzzer_%)
	@rc=0; for t in $(FUZZ_TARGETS); do \
		echo "== fuzz $$t for $(FUZZ_SECONDS) s"; mkdir -p tests/fuzz/findings/$$t; \
		tests/fuzz/libfuzzer_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=tests/fuzz/findings/$$t/ tests/fuzz/findings/$$t \
			tests/fuzz/corpus/$$t || rc=1; done; exit $$rc

soak: ncloudfs
	/usr/bin/python3 tests/soak/soak.py

memcheck: ncloudfs
	bash tests/memcheck.sh

demo: ncloudfs
	/usr/bin/python3 tests/demo.py $(if $(MNT),--mnt $(MNT))

clean:
	rm -f ncloudfs tests/e2e/ncp_probe fs/*.o client/*.o tests/unit/*.o $(UNIT_BIN) .build-flags tests/fuzz/replay_* \
		tests/fuzz/libfuzzer_*

install: ncloudfs
	install -D -m 0755 ncloudfs $(DESTDIR)$(PREFIX)/bin/ncloudfs
	install -D -m 0644 ncloudfs.1 $(DESTDIR)$(PREFIX)/share/man/man1/ncloudfs.1

# Packages, into dist/: `make deb` (debhelper: dist/ncloudfs_<debian version>_<arch>.deb,
# e.g. ncloudfs_0.1.0-1_amd64.deb, named as dpkg-buildpackage names it) and `make rpm`
# (rpmbuild --nodeps: dist/ncloudfs-0.1.0-1.<arch>.rpm). Each builds from a copy of the
# source tree (tracked files and new ones git does not ignore) in a temporary directory,
# so the tree stays clean. packaging/debian/changelog and packaging/rpm/ncloudfs.spec
# must be at $(VERSION).
.PHONY: deb rpm
# The package build is its own: no variables from this make (SANITIZE=..., -j).
PKG_ENV = env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u MAKEOVERRIDES -u SANITIZE
# The source files, NUL-separated: git's (tracked, and new ones it does not
# ignore) in a checkout; in an unpacked release tarball, its MANIFEST.
SOURCE_LIST = if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then \
		git ls-files -z --cached --others --exclude-standard; \
	elif [ -f MANIFEST ]; then tr '\n' '\0' < MANIFEST; \
	else echo "no git checkout and no MANIFEST: cannot tell the sources" >&2; exit 1; fi
PKG_SOURCES = { $(SOURCE_LIST); } | \
	xargs -0 -r sh -c 'for f; do [ -e "$$f" ] && printf "%s\0" "$$f"; done; exit 0' sh | \
	tar -c --null --no-recursion -T -

deb:
	@set -e; v=$$(dpkg-parsechangelog -l packaging/debian/changelog -S Version); \
	if [ "$${v%-*}" != "$(VERSION)" ]; then \
		echo "deb: packaging/debian/changelog is at $$v, VERSION is $(VERSION)" >&2; exit 1; fi; \
	[ -e ncloudfs.1 ] || { echo "deb: ncloudfs.1 (the man page) is missing" >&2; exit 1; }; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; src=$$tmp/ncloudfs-$(VERSION); \
	mkdir "$$src"; $(PKG_SOURCES) | tar -x -C "$$src"; cp -r packaging/debian "$$src/debian"; \
	echo "deb: dpkg-buildpackage -b -us -uc in $$src"; \
	(cd "$$src" && $(PKG_ENV) dpkg-buildpackage -b -us -uc) > "$$tmp/build.log" 2>&1 || \
		{ cat "$$tmp/build.log"; exit 1; }; \
	deb=ncloudfs_$${v}_$$(dpkg-architecture -qDEB_HOST_ARCH).deb; \
	mkdir -p dist; mv "$$tmp/$$deb" dist/; echo "deb: dist/$$deb"

rpm:
	@set -e; v=$$(sed -n 's/^Version:[[:space:]]*//p' packaging/rpm/ncloudfs.spec); \
	if [ "$$v" != "$(VERSION)" ]; then \
		echo "rpm: packaging/rpm/ncloudfs.spec is at $$v, VERSION is $(VERSION)" >&2; exit 1; fi; \
	[ -e ncloudfs.1 ] || { echo "rpm: ncloudfs.1 (the man page) is missing" >&2; exit 1; }; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	mkdir -p "$$tmp/SOURCES" "$$tmp/src/ncloudfs-$(VERSION)"; \
	$(PKG_SOURCES) | tar -x -C "$$tmp/src/ncloudfs-$(VERSION)"; \
	tar -czf "$$tmp/SOURCES/ncloudfs-$(VERSION).tar.gz" -C "$$tmp/src" ncloudfs-$(VERSION); \
	echo "rpm: rpmbuild -bb --nodeps in $$tmp"; \
	$(PKG_ENV) rpmbuild -bb --nodeps --define "_topdir $$tmp" packaging/rpm/ncloudfs.spec \
		> "$$tmp/build.log" 2>&1 || { cat "$$tmp/build.log"; exit 1; }; \
	mkdir -p dist; for f in "$$tmp"/RPMS/*/*.rpm; do mv "$$f" dist/; echo "rpm: dist/$${f##*/}"; done

# The release tarball, dist/ncloudfs-$(VERSION).tar.gz: every source file
# (as `make deb` takes them) and a MANIFEST naming them, so that `make`,
# `make check`, `make deb`, `make rpm` and `make dist` work in it unpacked,
# with no git.
.PHONY: dist
dist:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; src=$$tmp/ncloudfs-$(VERSION); \
	mkdir "$$src"; $(PKG_SOURCES) | tar -x -C "$$src"; \
	(cd "$$src" && find . -type f ! -name MANIFEST | sed 's|^\./||' | LC_ALL=C sort > MANIFEST); \
	mkdir -p dist; \
	tar -C "$$tmp" --owner=0 --group=0 --numeric-owner --sort=name \
		-czf dist/ncloudfs-$(VERSION).tar.gz ncloudfs-$(VERSION); \
	echo "dist: dist/ncloudfs-$(VERSION).tar.gz ($$(wc -l < "$$src/MANIFEST") files)"

bench: ncloudfs
	/usr/bin/python3 tests/bench/bench.py $(if $(RUNS),--runs $(RUNS))
