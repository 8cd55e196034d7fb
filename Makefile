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
SAN := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer
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
PYTEST := /usr/bin/python3 -m pytest

.PHONY: all check unit e2e demo clean install bench
all: ncloudfs

ncloudfs: fs/main.o $(LIB_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

%.o: %.c $(wildcard client/*.h fs/*.h)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

tests/unit/test_%: tests/unit/test_%.c tests/unit/testhelp.h $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) -Itests/unit $(ALL_LDFLAGS) -o $@ $< $(LIB_OBJ) $(LIBS)

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; (cd tests/unit && ./$$(basename $$t)); done

e2e: ncloudfs
	$(PYTEST) -q tests/e2e

check: unit e2e

demo: ncloudfs
	/usr/bin/python3 tests/demo.py $(if $(MNT),--mnt $(MNT))

clean:
	rm -f ncloudfs fs/*.o client/*.o $(UNIT_BIN)

install: ncloudfs
	install -D -m 0755 ncloudfs $(DESTDIR)$(PREFIX)/bin/ncloudfs

bench: ncloudfs
	/usr/bin/python3 tests/bench/bench.py $(if $(RUNS),--runs $(RUNS))
