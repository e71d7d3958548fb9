# pg_herald: business rules in SQL, delivered by PostgreSQL background workers.
#
# The version lives here only: it names the install script, fills the control
# file and reaches the C code as PG_HERALD_VERSION.

EXTENSION = pg_herald
EXTVERSION = 0.2.0

MODULE_big = pg_herald
OBJS = \
	src/pg_herald.o \
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
	src/format_chat.o \
	src/format_email.o \
	src/signing.o \
	src/links.o \
	src/http_server.o \
	src/decision_page.o \
	src/slack.o \
	src/template.o \
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
	$(shell $(PKG_CONFIG) --cflags libmicrohttpd)
SHLIB_LINK = $(shell $(CURL_CONFIG) --libs) $(shell $(PKG_CONFIG) --libs libmicrohttpd)

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

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
