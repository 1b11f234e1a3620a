# Pillar — one Makefile, pkg-config, no generated build system.
#
#   make            build ./pillar
#   make run        demo instance in ./run on 127.0.0.1 (see README)
#   make test       unit tests (cmocka) and integration tests (pytest)
#   make test SANITIZE=1   the same, built with AddressSanitizer and UBSan

CC      ?= cc
PREFIX  ?= /usr/local
SANITIZE ?= 0

# Debian packages the build and the tests need; installed only when missing.
BUILD_PKGS := gcc make pkg-config libevent-dev libsqlite3-dev libpq-dev libcrypt-dev libssl-dev libgsasl-dev
# postfix is only for its smtp-source and for a private instance the tests
# start themselves; debconf is told not to configure a system mail server.
TEST_PKGS  := libcmocka-dev python3-pytest curl fetchmail mpop openssl swaks postfix iproute2 strace postgresql

ifeq ($(SANITIZE),1)
BUILD    := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD    := build/release
SANFLAGS :=
endif

PKG_LIBS := libevent_core libevent_pthreads libevent_openssl sqlite3 libpq libssl libcrypto libcrypt libgsasl
WARN     := -Wall -Wextra -Wshadow -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Werror
CFLAGS   ?= -O2 -g
ALL_CFLAGS  = -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(SANFLAGS) -Isrc \
	      $(shell pkg-config --cflags $(PKG_LIBS) 2>/dev/null)
ALL_LDFLAGS = $(LDFLAGS) $(SANFLAGS) -pthread
LIBS        = $(shell pkg-config --libs $(PKG_LIBS) 2>/dev/null)

SRCS := $(sort $(wildcard src/*/*.c))
OBJS := $(SRCS:src/%.c=$(BUILD)/%.o)
LIB_OBJS := $(filter-out $(BUILD)/cli/main.o,$(OBJS))

UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all deps test-deps run test unit integration clean install format

all: pillar

# Install what is missing, nothing else; a machine that has everything is left alone.
deps:
	@missing=""; for p in $(BUILD_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

test-deps: deps
	@missing=""; for p in $(TEST_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

pillar: deps $(BUILD)/pillar
	@ln -sf $(BUILD)/pillar pillar

$(BUILD)/pillar: $(OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(LIBS)

$(BUILD)/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB_OBJS) $(ALL_LDFLAGS) $(LIBS) -lcmocka

-include $(OBJS:.o=.d)

run: pillar
	@./scripts/demo-run

test: test-deps pillar $(UNIT_BINS)
	@status=0; \
	echo "== unit tests"; \
	for t in $(UNIT_BINS); do $$t || status=1; done; \
	echo "== integration tests"; \
	PILLAR_BIN=$(CURDIR)/$(BUILD)/pillar /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration || status=1; \
	if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "== POP3, SMTP and LMTP integration tests with a PostgreSQL directory"; \
	  PILLAR_TEST_DIRECTORY=postgresql PILLAR_BIN=$(CURDIR)/$(BUILD)/pillar /usr/bin/python3 -m pytest -q -p no:cacheprovider $(PG_SUITE) || status=1; \
	fi; \
	exit $$status

# The protocol suites again with `directory = postgresql://...` (a cluster
# the tests start, tests/integration/pgcluster.py); the one test that looks
# at directory.db itself is left out.
PG_SUITE := $(wildcard tests/integration/test_pop3_*.py tests/integration/test_smtp_*.py) \
	    tests/integration/test_lmtp.py tests/integration/test_deliver.py tests/integration/test_auth.py \
	    --deselect tests/integration/test_pop3_session.py::test_state_owned_by_run_as_account


unit: test-deps $(UNIT_BINS)
	@for t in $(UNIT_BINS); do $$t || exit 1; done

integration: test-deps pillar
	PILLAR_BIN=$(CURDIR)/$(BUILD)/pillar /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration $(PYTEST_ARGS)

format:
	clang-format -i $(SRCS) $(wildcard src/*/*.h) $(UNIT_SRCS)

# make bench [BENCH_QUICK=1]: the same workloads against Pillar and Dovecot on
# loopback, one table (bench/NOTES.md). As root; installs Dovecot if missing.
.PHONY: bench
build/bench/popload: $(wildcard bench/popload/*.c) bench/popload/popload.h
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) $(CFLAGS) $(shell pkg-config --cflags openssl libxcrypt) \
		-o $@ $(filter %.c,$^) $(shell pkg-config --libs openssl libxcrypt)

bench: pillar build/bench/popload
	/usr/bin/python3 bench/run

# make install [PREFIX=/usr/local] [DESTDIR=/staging]: the program, the man
# pages, the systemd unit (pointing at $(PREFIX)/sbin/pillar) and, in DOCDIR,
# the example config and the fail2ban filter and jail. /etc is left alone:
# the README's "Running Pillar" says what to copy there.
DOCDIR  ?= $(PREFIX)/share/doc/pillar
UNITDIR ?= $(PREFIX)/lib/systemd/system
INSTALLED := $(PREFIX)/sbin/pillar $(PREFIX)/share/man/man8/pillar.8 \
	     $(PREFIX)/share/man/man5/pillar.conf.5 $(UNITDIR)/pillar.service \
	     $(DOCDIR)/pillar.conf.example $(DOCDIR)/fail2ban/filter.d/pillar.conf \
	     $(DOCDIR)/fail2ban/jail.d/pillar.local

install: pillar
	install -D -m 0755 $(BUILD)/pillar $(DESTDIR)$(PREFIX)/sbin/pillar
	install -D -m 0644 man/pillar.8 $(DESTDIR)$(PREFIX)/share/man/man8/pillar.8
	install -D -m 0644 man/pillar.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/pillar.conf.5
	sed 's|/usr/sbin/pillar|$(PREFIX)/sbin/pillar|g' contrib/pillar.service >$(BUILD)/pillar.service
	install -D -m 0644 $(BUILD)/pillar.service $(DESTDIR)$(UNITDIR)/pillar.service
	install -D -m 0644 contrib/pillar.conf.example $(DESTDIR)$(DOCDIR)/pillar.conf.example
	install -D -m 0644 contrib/fail2ban/filter.d/pillar.conf $(DESTDIR)$(DOCDIR)/fail2ban/filter.d/pillar.conf
	install -D -m 0644 contrib/fail2ban/jail.d/pillar.local $(DESTDIR)$(DOCDIR)/fail2ban/jail.d/pillar.local

# Removes what install put there; config, state and mail are never touched.
.PHONY: uninstall
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(DOCDIR)/fail2ban/filter.d $(DESTDIR)$(DOCDIR)/fail2ban/jail.d \
	       $(DESTDIR)$(DOCDIR)/fail2ban $(DESTDIR)$(DOCDIR) 2>/dev/null

clean:
	rm -rf build pillar
