# qinspect build.  `make` builds ./qinspect; `make check` builds the
# ASan+UBSan variant and runs every test; `make bench` compares with qemu-img
# (bench/run.sh; QUICK=1 for a short run).
PKG_CONFIG ?= pkg-config
PKGS = lua5.4 readline zlib libzstd
CC ?= cc
PREFIX ?= /usr/local
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man/man1

WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
       -Wformat=2 -Wvla -Wno-format-nonliteral
PKG_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS))
PKG_LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS))
BASE_CFLAGS = -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 $(WARN) \
              -Iinclude -Isrc/engine -Isrc/bind -Isrc/cli $(PKG_CFLAGS)

VARIANT ?= release
ifeq ($(VARIANT),asan)
  VCFLAGS = -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
            -fno-sanitize-recover=all -DQI_DEBUG
  VLDFLAGS = -fsanitize=address,undefined
else
  VCFLAGS = -O2 -g
  VLDFLAGS =
endif
CFLAGS ?=
LDFLAGS ?=
ALL_CFLAGS = $(BASE_CFLAGS) $(VCFLAGS) $(CFLAGS)
ALL_LDFLAGS = $(VLDFLAGS) $(LDFLAGS)

B = build/$(VARIANT)
ENGINE_SRC = $(sort $(wildcard src/engine/*.c))
BIND_SRC = $(sort $(wildcard src/bind/*.c))
CLI_SRC = $(sort $(wildcard src/cli/*.c))
LUA_SRC = $(sort $(wildcard lua/qinspect/*.lua))
ENGINE_OBJ = $(ENGINE_SRC:%.c=$(B)/%.o)
BIND_OBJ = $(BIND_SRC:%.c=$(B)/%.o)
CLI_OBJ = $(CLI_SRC:%.c=$(B)/%.o)
GEN_OBJ = $(B)/gen/lua_blobs.o
UNIT_SRC = $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)
FUZZ_DRV = $(B)/tests/fuzz_replay

ifeq ($(VARIANT),release)
  BIN = qinspect
else
  BIN = $(B)/qinspect
endif

.PHONY: all check check-layers unit install uninstall clean bench examples mutate
all: $(BIN)

$(BIN): $(CLI_OBJ) $(BIND_OBJ) $(ENGINE_OBJ) $(GEN_OBJ)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(PKG_LIBS) -lm

$(B)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(B)/gen/lua_blobs.c: $(LUA_SRC) scripts/embed-lua.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-lua.sh $@ $(LUA_SRC)

$(B)/gen/lua_blobs.o: $(B)/gen/lua_blobs.c
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# Unit tests: each links tests/tap.o, tests/unit/testutil.o (libc only) and
# the engine objects of its own layer and below (scripts/unit-deps.sh), so an
# upward call fails to link.
$(B)/tests/test_%: tests/unit/test_%.c $(B)/tests/tap.o $(B)/tests/testutil.o $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(B)/tests/tap.o $(B)/tests/testutil.o \
	    $(addprefix $(B)/src/engine/,$(addsuffix .o,$(shell sh scripts/unit-deps.sh $*))) \
	    $(ALL_LDFLAGS) $(PKG_LIBS) -lm

$(B)/tests/tap.o: tests/tap.c tests/tap.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -c -o $@ $<

$(B)/tests/testutil.o: tests/unit/testutil.c tests/unit/testutil.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(FUZZ_DRV): tests/fuzz/replay.c $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(ENGINE_OBJ) $(ALL_LDFLAGS) $(PKG_LIBS) -lm

unit: $(UNIT_BIN)

# Sanitizer reports exit with 86, never with the 1 of an expected error;
# tests/run.sh adds log_path (a per-run directory) and fails a suite after
# which a report appeared.
check: check-layers
	$(MAKE) VARIANT=asan build/asan/qinspect unit-asan
	$(MAKE) VARIANT=release qinspect
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=86 \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86 \
	QINSPECT=$(CURDIR)/build/asan/qinspect UNIT_DIR=$(CURDIR)/build/asan/tests \
	    sh tests/run.sh

unit-asan:
	$(MAKE) VARIANT=asan unit build/asan/tests/fuzz_replay

check-layers:
	sh scripts/check-layers.sh

# Side by side with qemu-img on fixtures made by bench/fixtures.sh (kept in
# $TMPDIR between runs). QUICK=1: small fixtures; RUNS=N pairs; ONLY=REGEX rows.
bench: qinspect
	QUICK=$(QUICK) bash bench/run.sh ./qinspect

# Mutation testing (a development tool, not part of check): apply each
# mutation of scripts/mutations.txt to a scratch copy and run its suites.
# MUTATE="name ..." picks some; the table says which mutations survived.
mutate:
	python3 scripts/mutate.py $(MUTATE)

examples: qinspect
	sh examples/make-example.sh examples/example.qcow2

install: qinspect
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)
	install -m 755 qinspect $(DESTDIR)$(BINDIR)/qinspect
	install -m 644 doc/qinspect.1 $(DESTDIR)$(MANDIR)/qinspect.1

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/qinspect $(DESTDIR)$(MANDIR)/qinspect.1

clean:
	rm -rf build qinspect

-include $(shell find build -name '*.d' 2>/dev/null)
