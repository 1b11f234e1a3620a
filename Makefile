# Pillar — one Makefile, pkg-config, no generated build system.
#
#   make            build ./pillar
#   make run        demo instance in ./run on 127.0.0.1 (see README)
#   make test       unit tests (cmocka) and integration tests (pytest)
#   make test SANITIZE=1   the same, built with AddressSanitizer and UBSan
#   make valgrind   the unit tests under valgrind (memcheck)
#   .ci/run         what CI runs: the above, then make fuzz FUZZ_SECONDS=20

CC      ?= cc
PREFIX  ?= /usr/local
SANITIZE ?= 0

# Debian packages the build and the tests need; installed only when missing.
BUILD_PKGS := gcc make pkg-config libevent-dev libsqlite3-dev libpq-dev libcrypt-dev libssl-dev libgsasl-dev libseccomp-dev
# postfix is only for its smtp-source and for a private instance the tests
# start themselves; debconf is told not to configure a system mail server.
# postgresql and haproxy likewise: the tests start their own cluster and
# their own HAProxy from private configs on loopback ports (Debian's default
# haproxy.cfg listens nowhere).
TEST_PKGS  := libcmocka-dev python3-pytest python3-pytest-xdist curl fetchmail mpop openssl swaks postfix iproute2 strace postgresql \
	      haproxy
POSTFIX_PRESEED := echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections;

# $(call apt-install,PACKAGES[,COMMAND]): install those of the Debian
# PACKAGES that are missing (running COMMAND first), nothing else; a machine
# that has everything is left alone.
define apt-install
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(2) apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

ifeq ($(SANITIZE),1)
BUILD    := build/san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else
BUILD    := build/release
SANFLAGS :=
endif

PKG_LIBS := libevent_core libevent_pthreads libevent_openssl sqlite3 libpq libssl libcrypto libcrypt libgsasl libseccomp
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

.PHONY: all deps test-deps run test test-postgresql unit integration clean install format valgrind valgrind-deps

all: pillar

deps:
	$(call apt-install,$(BUILD_PKGS))

test-deps: deps
	$(call apt-install,$(TEST_PKGS),$(POSTFIX_PRESEED))

pillar: deps $(BUILD)/pillar
	@ln -sf $(BUILD)/pillar pillar

# LINK_EXTRA: objects only some builds link in (make coverage's exit hook).
$(BUILD)/pillar: $(OBJS) $(LINK_EXTRA)
	$(CC) $(ALL_LDFLAGS) -o $@ $(OBJS) $(LINK_EXTRA) $(LIBS)

$(BUILD)/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c $(LIB_OBJS) $(LINK_EXTRA)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(LIB_OBJS) $(LINK_EXTRA) $(ALL_LDFLAGS) $(LIBS) -lcmocka

-include $(OBJS:.o=.d)

run: pillar
	@./scripts/demo-run

# Integration tests run TEST_JOBS at a time (pytest-xdist): each test has
# its own server on its own ports and mostly waits on sockets and timers.
TEST_JOBS ?= 4
PYTEST    := /usr/bin/python3 -m pytest -q -rs -p no:cacheprovider -n $(TEST_JOBS)

test: test-deps pillar $(UNIT_BINS)
	@status=0; \
	echo "== unit tests"; \
	for t in $(UNIT_BINS); do $$t || status=1; done; \
	echo "== integration tests"; \
	PILLAR_BIN=$(CURDIR)/$(BUILD)/pillar $(PYTEST) tests/integration || status=1; \
	if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  echo "== POP3, SMTP, LMTP, client, TLS and auth integration tests again with a PostgreSQL directory"; \
	  PILLAR_TEST_DIRECTORY=postgresql PILLAR_BIN=$(CURDIR)/$(BUILD)/pillar $(PYTEST) $(PG_SUITE) || status=1; \
	fi; \
	exit $$status

# The protocol suites again with `directory = postgresql://...` (a cluster
# the tests start, tests/integration/pgcluster.py); the one test that looks
# at directory.db itself is left out.
PG_SUITE := $(wildcard tests/integration/test_pop3_*.py tests/integration/test_smtp_*.py) \
	    tests/integration/test_lmtp.py tests/integration/test_deliver.py tests/integration/test_auth.py \
	    tests/integration/test_clients.py tests/integration/test_tls.py \
	    --deselect tests/integration/test_pop3_session.py::test_state_owned_by_run_as_account


test-postgresql: test-deps pillar
	PILLAR_TEST_DIRECTORY=postgresql PILLAR_BIN=$(CURDIR)/$(BUILD)/pillar $(PYTEST) $(PG_SUITE)

unit: test-deps $(UNIT_BINS)
	@for t in $(UNIT_BINS); do $$t || exit 1; done

# make valgrind: every unit test under valgrind's memcheck, on the normal
# build (valgrind and the sanitizers do not mix). An invalid read or write,
# a jump on uninitialised memory, a bad free, or a leak (definite, indirect
# or possible; "still reachable" is not a leak) makes the test exit non-zero
# and the run fail. There is no suppression file: the libraries the tests
# use (libevent, OpenSSL, SQLite, libpq, libgsasl, libxcrypt, cmocka)
# report nothing; noise from one of them would be suppressed there, each
# entry with its reason, never a report from Pillar's own code. Each test's
# output is kept in $(BUILD)/tests/<test>.valgrind.log and shown when it
# fails.
VALGRIND_PKGS  := valgrind
VALGRIND_FLAGS := -q --error-exitcode=99 --leak-check=full \
		  --show-leak-kinds=definite,indirect,possible \
		  --errors-for-leak-kinds=definite,indirect,possible

valgrind-deps:
	$(call apt-install,$(VALGRIND_PKGS))

valgrind: test-deps valgrind-deps $(UNIT_BINS)
	@if [ "$(SANITIZE)" = 1 ]; then echo "make valgrind runs on the normal build, not SANITIZE=1"; exit 2; fi
	@status=0; for t in $(UNIT_BINS); do \
	  start=$$(date +%s); \
	  if valgrind $(VALGRIND_FLAGS) $$t >$$t.valgrind.log 2>&1; then \
	    echo "== valgrind $$(basename $$t): $$(grep -c '^\[       OK \]' $$t.valgrind.log) tests passed, $$(( $$(date +%s) - start )) s"; \
	  else \
	    status=1; cat $$t.valgrind.log; echo "FAILED: valgrind $$t (log: $$t.valgrind.log)"; \
	  fi; \
	done; exit $$status

integration: test-deps pillar
	PILLAR_BIN=$(CURDIR)/$(BUILD)/pillar $(PYTEST) tests/integration $(PYTEST_ARGS)

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

# ---- fuzzing (libFuzzer) ----
#
#   make fuzz                       build every fuzz/fuzz_<name>.c and run each
#                                   for FUZZ_SECONDS on a copy of its seed corpus
#   make fuzz FUZZ_SECONDS=20 FUZZERS="pop3_parse smtp_data"
#   make fuzz-build                 only build them (build/fuzz/fuzz_<name>)
#
# The targets and the project's objects are built with clang, ASan and UBSan
# in build/fuzz; the objects get -fsanitize=fuzzer-no-link so libFuzzer sees
# their coverage. Compiler warnings are shown but not fatal here: the release
# build (gcc, -Werror) is the one that judges them. A crash, leak, timeout or
# OOM fails the run; the input is kept in build/fuzz/run/<name>/, the log in
# build/fuzz/run/<name>/log. See fuzz/README.md.
FUZZ_PKGS    := clang libclang-rt-dev llvm
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build/fuzz
FUZZ_CC      := clang
FUZZERS      ?= $(patsubst fuzz/fuzz_%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS   = -std=c11 -D_GNU_SOURCE $(filter-out -Werror,$(WARN)) -O1 -g $(FUZZ_SAN) -Isrc \
		$(shell pkg-config --cflags $(PKG_LIBS) 2>/dev/null)
FUZZ_OBJS    := $(filter-out $(FUZZ_BUILD)/cli/main.o,$(SRCS:src/%.c=$(FUZZ_BUILD)/%.o)) \
		$(patsubst fuzz/%.c,$(FUZZ_BUILD)/fuzz/%.o,$(filter-out fuzz/fuzz_%.c,$(wildcard fuzz/*.c)))
FUZZ_BINS    := $(FUZZERS:%=$(FUZZ_BUILD)/fuzz_%)
FUZZ_FLAGS   := -timeout=5 -rss_limit_mb=2048 -close_fd_mask=2 -print_final_stats=1

.PHONY: fuzz fuzz-build fuzz-deps

fuzz-deps: deps
	$(call apt-install,$(FUZZ_PKGS))

$(FUZZ_BUILD)/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c -o $@ $<

$(FUZZ_BUILD)/fuzz/%.o: fuzz/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<

# An archive, so each target links only the objects it uses.
$(FUZZ_BUILD)/libpillar-fuzz.a: $(FUZZ_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $(FUZZ_BUILD)/libpillar-fuzz.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -Ifuzz -MMD -MP -o $@ $< \
		$(FUZZ_BUILD)/libpillar-fuzz.a $(LIBS) -pthread

-include $(FUZZ_OBJS:.o=.d) $(FUZZ_BINS:=.d)

fuzz-build: fuzz-deps $(FUZZ_BINS)

# Each target runs on a copy of its seed corpus, so what it finds never
# grows the committed corpus.
fuzz: fuzz-build
	@status=0; for t in $(FUZZERS); do \
	  run=$(FUZZ_BUILD)/run/$$t; rm -rf $$run; mkdir -p $$run/corpus; \
	  if [ -d fuzz/corpus/$$t ]; then cp -R fuzz/corpus/$$t/. $$run/corpus/; fi; \
	  dict=""; if [ -f fuzz/$$t.dict ]; then dict="-dict=fuzz/$$t.dict"; fi; \
	  echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  if UBSAN_OPTIONS=$${UBSAN_OPTIONS:-print_stacktrace=1} \
	     $(FUZZ_BUILD)/fuzz_$$t $(FUZZ_FLAGS) -max_total_time=$(FUZZ_SECONDS) \
	       -artifact_prefix=$$run/ $$dict $$run/corpus >$$run/log 2>&1; then \
	    grep -E '^(#[0-9]+|Done )' $$run/log | tail -n 2 | sed 's/^/   /'; \
	  else \
	    status=1; tail -n 80 $$run/log; \
	    echo "FAILED: fuzz $$t; input and log in $$run/"; \
	  fi; \
	done; exit $$status

# ---- coverage ----
#
#   make coverage     line coverage of src/ from the unit and integration tests
#
# clang's source-based coverage: everything is built in build/cov with
# -fprofile-instr-generate -fcoverage-mapping (warnings not fatal, as for the
# fuzz build), the unit tests and the integration tests (against
# build/cov/pillar) run with LLVM_PROFILE_FILE pointing into build/cov/prof,
# and llvm-cov reports per file and in total; an HTML report goes to
# build/cov/html. Profiles are merged as they are written, into a pool of 8
# files per binary (%8m; one file per process would be overwritten when PIDs
# wrap around). pillar's pool files are made first and world-writable:
# processes that dropped to run_as must merge into them too, and their
# "cannot write profile" line on stderr would fail the CLI tests. Processes
# that end with _exit write their profile too: the build wraps _exit
# (tests/coverage/exit_hook.c), and so do the POP3 login workers, which end
# chrooted: they open a profile of their own (jailed.profraw) before the
# chroot. Those killed by a signal (the SIGKILL tests) write none. Exits
# non-zero if a test failed.
COV_BUILD     := build/cov
COV_FLAGS     := -O0 -g -fprofile-instr-generate -fcoverage-mapping
COV_UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(COV_BUILD)/tests/%)
COV_OBJECTS   := $(COV_BUILD)/pillar $(addprefix -object ,$(COV_UNIT_BINS))

$(COV_BUILD)/coverage/exit_hook.o: tests/coverage/exit_hook.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O0 -g -c -o $@ $<

.PHONY: coverage
coverage: fuzz-deps test-deps
	$(MAKE) --no-print-directory BUILD=$(COV_BUILD) CC=$(FUZZ_CC) SANITIZE=0 \
		CFLAGS="$(COV_FLAGS)" \
		LDFLAGS="-fprofile-instr-generate -Wl,--wrap=_exit,--wrap=chroot,--wrap=seccomp_load" \
		LINK_EXTRA=$(COV_BUILD)/coverage/exit_hook.o \
		WARN="$(filter-out -Werror,$(WARN))" $(COV_BUILD)/pillar $(COV_UNIT_BINS)
	@rm -rf $(COV_BUILD)/prof $(COV_BUILD)/html; mkdir -p $(COV_BUILD)/prof; \
	chmod 1777 $(COV_BUILD)/prof; \
	export LLVM_PROFILE_FILE=$(CURDIR)/$(COV_BUILD)/prof/%8m.profraw; status=0; \
	$(COV_BUILD)/pillar help >/dev/null 2>&1; \
	for f in $(COV_BUILD)/prof/*_*.profraw; do \
	  for i in 0 1 2 3 4 5 6 7; do touch $${f%_*}_$$i.profraw; done; \
	done; \
	touch $(COV_BUILD)/prof/jailed.profraw; \
	chmod 0666 $(COV_BUILD)/prof/*.profraw; \
	export PILLAR_COVERAGE_JAILED=$(CURDIR)/$(COV_BUILD)/prof/jailed.profraw; \
	echo "== unit tests"; \
	for t in $(COV_UNIT_BINS); do $$t >/dev/null 2>&1 || { echo "FAILED: $$t"; status=1; }; done; \
	echo "== integration tests"; \
	PILLAR_BIN=$(CURDIR)/$(COV_BUILD)/pillar /usr/bin/python3 -m pytest -q -p no:cacheprovider \
		tests/integration $(PYTEST_ARGS) || status=1; \
	llvm-profdata merge -sparse $(COV_BUILD)/prof/*.profraw -o $(COV_BUILD)/pillar.profdata \
		|| exit 1; \
	llvm-cov show -format=html -output-dir=$(COV_BUILD)/html \
		-instr-profile=$(COV_BUILD)/pillar.profdata $(COV_OBJECTS) src/ >/dev/null; \
	echo "== line coverage of src/ (HTML: $(COV_BUILD)/html/index.html)"; \
	llvm-cov report -show-region-summary=false -show-branch-summary=false \
		-ignore-filename-regex='\.h$$' -instr-profile=$(COV_BUILD)/pillar.profdata \
		$(COV_OBJECTS) src/; \
	exit $$status
