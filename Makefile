# pg_herald: business rules in SQL, delivered by PostgreSQL background workers.
#
# The version lives here only: it names the install script, fills the control
# file and reaches the C code as PG_HERALD_VERSION.

EXTENSION = pg_herald
EXTVERSION = 0.2.0

MODULE_big = pg_herald
OBJS = \
	src/pg_herald.o \
	src/launcher.o \
	src/api.o \
	src/capture.o \
	src/event_log.o \
	src/rule_code.o \
	src/payload.o \
	src/queue.o \
	src/log_cursor.o \
	src/delivery.o \
	src/http.o \
	src/network.o \
	src/webhook.o \
	src/format.o \
	src/channel_kinds.o \
	src/nats.o \
	src/format_chat.o \
	src/format_email.o \
	src/signing.o \
	src/links.o \
	src/http_server.o \
	src/decision_page.o \
	src/slack.o \
	src/template.o \
	src/filters.o \
	src/event_types.o \
	src/limits.o \
	src/evaluate.o \
	src/scheduler.o

DATA_built = $(EXTENSION)--$(EXTVERSION).sql $(EXTENSION)--0.1.0--$(EXTVERSION).sql
DATA = install/released/$(EXTENSION)--0.1.0.sql
EXTRA_CLEAN = $(EXTENSION).control

CURL_CONFIG ?= curl-config
PKG_CONFIG ?= pkg-config
PG_CPPFLAGS = -DPG_HERALD_VERSION=\"$(EXTVERSION)\" $(shell $(CURL_CONFIG) --cflags) \
	$(shell $(PKG_CONFIG) --cflags libmicrohttpd) $(shell $(PKG_CONFIG) --cflags libnats) \
	$(shell $(PKG_CONFIG) --cflags libcrypto)
SHLIB_LINK = $(shell $(CURL_CONFIG) --libs) $(shell $(PKG_CONFIG) --libs libmicrohttpd) \
	$(shell $(PKG_CONFIG) --libs libnats) $(shell $(PKG_CONFIG) --libs libcrypto) -lpthread

# ---- tests (see "Tests" in README.md) ----
# make installcheck: the pg_regress tests of test/schedule (test/sql,
# test/expected), then the isolation specs (test/isolation/specs and
# expected), against the running server psql reaches, in database
# $(HERALD_DB): the database its workers serve (herald.database), which
# therefore exists and is never dropped (--use-existing).  The tests
# need the local HTTP and SMTP receivers; unless HERALD_RECEIVER_URL is
# set (test/run sets it), scripts/installcheck.sh checks the server,
# starts them and runs PGXS's installcheck within.
HERALD_DB = herald
REGRESS = $(shell sed -n 's/^test: *//p' test/schedule)
REGRESS_OPTS = --inputdir=test --use-existing
ISOLATION = $(sort $(basename $(notdir $(wildcard test/isolation/specs/*.spec))))
ISOLATION_OPTS = --inputdir=test/isolation --use-existing
REGRESS_PREP = installcheck-env
ifndef HERALD_RECEIVER_URL
NO_INSTALLCHECK = 1
endif

# make prove_installcheck: the TAP tests test/t/*.pl (or PROVE_TESTS);
# each makes its own clusters with this PostgreSQL's binaries.
PROVE_TESTS = test/t/*.pl

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Makefile.global names the test databases; the tests run in HERALD_DB.
CONTRIB_TESTDB = $(HERALD_DB)
ISOLATION_TESTDB = $(HERALD_DB)

ifndef HERALD_RECEIVER_URL
installcheck:
	bash scripts/installcheck.sh $(HERALD_DB) $(MAKE) installcheck
endif

.PHONY: installcheck-env prove_installcheck
installcheck-env:
	@for v in HERALD_RECEIVER_URL HERALD_RECEIVER_LOG HERALD_SMTP_URL HERALD_SMTP_LOG HERALD_TEST_DIR; do \
		if [ -z "$$(printenv $$v)" ]; then \
			echo "make installcheck: $$v is not set (unset HERALD_RECEIVER_URL to have make start the receivers)" >&2; \
			exit 1; \
		fi; \
	done

# PGXS's recipe when PostgreSQL was configured with --enable-tap-tests
# (Debian's is); without, its Perl modules are missing and PGXS would only
# print a line and succeed.  initdb refuses to run as root.
prove_installcheck:
ifneq ($(enable_tap_tests),yes)
	@echo "make prove_installcheck: $(PG_CONFIG) names a PostgreSQL configured without --enable-tap-tests (pg_config --configure), which has no PostgreSQL::Test::Cluster" >&2; exit 1
endif
	@if [ "$$(id -u)" -eq 0 ]; then \
		echo "make prove_installcheck: initdb refuses to run as root; run it as another user (bash test/run does, as postgres)" >&2; \
		exit 1; \
	fi
	$(prove_installcheck)

all: $(EXTENSION).control

$(EXTENSION).control: $(EXTENSION).control.in Makefile
	sed 's/@EXTVERSION@/$(EXTVERSION)/' $< > $@

# The install script of this version: the tables (install/schema.sql), then
# the code: functions, views and triggers, every one CREATE OR REPLACE, in
# this order: channels and row rules, threshold rules, decisions; privileges
# last.
CODE_SQL = install/pg_herald.sql install/thresholds.sql install/decisions.sql \
	install/privileges.sql

$(EXTENSION)--$(EXTVERSION).sql: install/schema.sql $(CODE_SQL) Makefile
	cat install/schema.sql $(CODE_SQL) > $@

# The upgrade from the last release: what changed in its tables and what it
# had that this version drops or redefines with another signature
# (install/pg_herald--0.1.0--0.2.0.sql), then the same code as a fresh
# install.  Released scripts are frozen in install/released/; when this
# version is released, the script built here joins them.
$(EXTENSION)--0.1.0--$(EXTVERSION).sql: install/$(EXTENSION)--0.1.0--$(EXTVERSION).sql $(CODE_SQL) Makefile
	cat $< $(CODE_SQL) > $@

$(OBJS): src/pg_herald.h
src/http_server.o src/decision_page.o src/slack.o: src/http_server.h
src/http.o src/delivery.o src/nats.o: src/http.h
