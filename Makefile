# push2 — targets a newcomer can guess. `make demo` is the main job, `make test`
# runs every test (unit, plugins, end to end); .ci/run calls `make test`.
GO      ?= go
BIN     := bin
PKGS    := ./...

.PHONY: all build test unit e2e bench bench-prosody bench-postgres fuzz plugins demo deps vet clean install ejabberd-bridge

# make install: where things go (docs/push2d.md "Installing"). DESTDIR is
# prepended to every path (packaging, the install test); PREFIX moves the
# binaries, the Prosody module and the systemd files; SYSCONFDIR the config.
PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
SYSCONFDIR  ?= /etc
PROSODYMODDIR ?= $(PREFIX)/lib/prosody/modules
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# Everything CI runs. deps installs the Debian packages the real-part tests
# need (Prosody 0.12 and, unpacked from bookworm-backports, 13;
# prosody-modules; toolchains) when they are missing. The end-to-end tests
# run on both Prosody versions.
# -timeout: the end-to-end suite runs twice (Prosody 13 and 0.12), longer
# than go test's default 10 minutes on a loaded machine.
test: deps vet plugins
	./scripts/profile-test-all.sh
	$(GO) test -count=1 -timeout 45m $(PKGS)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet $(PKGS)

# The ejabberd bridge (examples/ejabberd, docs/ejabberd.md): the .beam,
# compiled with erlc against the headers of the installed ejabberd (Debian:
# /usr/lib/<arch>/ejabberd-<version>/include) and the xmpp library's (found
# by erlc's include_lib in Erlang's lib directory). EJABBERD_INCLUDE
# overrides the header directory, EJABBERD_EBIN where the .beam goes.
ERLC             ?= erlc
EJABBERD_INCLUDE ?= $(lastword $(sort $(wildcard /usr/lib/*/ejabberd-[0-9]*/include /usr/lib/ejabberd/include)))
EJABBERD_EBIN    ?= build/mod_push2_bridge/ebin

ejabberd-bridge: $(EJABBERD_EBIN)/mod_push2_bridge.beam

$(EJABBERD_EBIN)/mod_push2_bridge.beam: examples/ejabberd/mod_push2_bridge.erl
	@test -n "$(EJABBERD_INCLUDE)" && test -r "$(EJABBERD_INCLUDE)/logger.hrl" || { echo "ejabberd's headers (logger.hrl) not found: run scripts/install-deps.sh (ejabberd and erlang-dev from bookworm-backports), or set EJABBERD_INCLUDE"; exit 1; }
	@mkdir -p $(EJABBERD_EBIN)
	$(ERLC) -Werror +debug_info -I $(EJABBERD_INCLUDE) -pa $(EJABBERD_INCLUDE)/../ebin -o $(EJABBERD_EBIN) $<

# Every sample WebAssembly plugin, built from source (plugins/build/).
plugins:
	./plugins/build.sh

unit:
	$(GO) test -short -count=1 $(PKGS)

deps:
	./scripts/install-deps.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m $(PKGS)

# What the bridge and push2d cost Prosody (CPU per 1,000 messages with no
# push module, with the bridge for a user with and without a registration;
# default and generational GC), and pushes/s and latency at 500 msg/s, on
# Prosody 13 and 0.12 (issue 12 goals 1, 2; docs/benchmarks.md). Minutes.
bench-prosody:
	$(GO) test -run '^$$' -bench 'ProsodyCost|ProsodyRate' -benchtime 1x -count 3 -timeout 60m ./internal/e2e/

# The PostgreSQL store (issue 16; docs/benchmarks.md): pushes/s through the
# engine on PostgreSQL vs Pebble in the same run, enable and lookup latency
# with 1,000,000 registrations (loaded with COPY), three rounds each; and
# the failover time, three runs of e2e TestFailover on each Prosody (its
# FAILOVER lines: duplicates, takeover, first push after it). Minutes.
bench-postgres:
	$(GO) test -run '^$$' -bench 'PushPostgresVsPebble|MillionPostgres' -benchtime 3x -timeout 30m ./engine/pgstore/
	@out=$$($(GO) test -count=3 -p 1 -timeout 30m -run 'TestFailover$$' -v ./internal/e2e/ 2>&1); rc=$$?; \
	echo "$$out" | grep -E 'FAILOVER|^(---|ok|FAIL)'; exit $$rc

# Short fuzzing of every parser, for local use (CI runs the seed corpora as
# part of `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse$$ -fuzztime 30s ./engine/
	$(GO) test -run '^$$' -fuzz FuzzParseEnable -fuzztime 30s ./engine/
	$(GO) test -run '^$$' -fuzz FuzzProvisionEncrypted -fuzztime 30s ./profiles/
	$(GO) test -run '^$$' -fuzz FuzzMinimize -fuzztime 30s ./profiles/

# The main job: Prosody + bridge + push2d on 127.0.0.1, a push arriving.
# Prosody 13 by default; make demo ARGS=-prosody012 runs Debian 12's 0.12,
# ARGS=-ejabberd runs it on ejabberd (examples/ejabberd, docs/ejabberd.md),
# ARGS=-keep keeps the stack running.
demo:
	./examples/demo.sh $(ARGS)

# End-to-end tests alone (real Prosody, bridge, push2d, mellium clients).
e2e: deps
	$(GO) test -count=1 -timeout 45m -v -run . ./internal/e2e/

# The binaries, the bridge module, the systemd units of push2d and
# push2relay (ExecStart following BINDIR and SYSCONFDIR) and their user, and
# the example configs, which never replace existing ones. Nothing here starts, creates a user or touches
# a running system: docs/push2d.md "Installing" lists the steps after it.
install: build
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(PROSODYMODDIR)/mod_push2_bridge $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR) $(DESTDIR)$(SYSCONFDIR)/push2
	install -m 755 $(BIN)/push2d $(BIN)/push2 $(BIN)/push2relay $(DESTDIR)$(BINDIR)/
	install -m 644 examples/prosody/mod_push2_bridge/mod_push2_bridge.lua $(DESTDIR)$(PROSODYMODDIR)/mod_push2_bridge/
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/etc/push2/|$(SYSCONFDIR)/push2/|g' examples/systemd/push2d.service > $(DESTDIR)$(UNITDIR)/push2d.service
	chmod 644 $(DESTDIR)$(UNITDIR)/push2d.service
	sed -e 's|/usr/local/bin/|$(BINDIR)/|g' -e 's|/etc/push2/|$(SYSCONFDIR)/push2/|g' examples/systemd/push2relay.service > $(DESTDIR)$(UNITDIR)/push2relay.service
	chmod 644 $(DESTDIR)$(UNITDIR)/push2relay.service
	install -m 644 examples/systemd/push2.sysusers.conf $(DESTDIR)$(SYSUSERSDIR)/push2.conf
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/push2/push2d.toml ]; then \
		echo "$(DESTDIR)$(SYSCONFDIR)/push2/push2d.toml exists: kept (the example is examples/push2d.toml)"; \
	else \
		sed -e 's|/etc/push2/|$(SYSCONFDIR)/push2/|g' examples/push2d.toml > $(DESTDIR)$(SYSCONFDIR)/push2/push2d.toml && \
		chmod 644 $(DESTDIR)$(SYSCONFDIR)/push2/push2d.toml; \
	fi
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/push2/push2relay.toml ]; then \
		echo "$(DESTDIR)$(SYSCONFDIR)/push2/push2relay.toml exists: kept (the example is examples/push2relay.toml)"; \
	else \
		sed -e 's|/etc/push2/|$(SYSCONFDIR)/push2/|g' examples/push2relay.toml > $(DESTDIR)$(SYSCONFDIR)/push2/push2relay.toml && \
		chmod 644 $(DESTDIR)$(SYSCONFDIR)/push2/push2relay.toml; \
	fi

clean:
	rm -rf $(BIN) build/mod_push2_bridge
