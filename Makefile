# push2 — targets a newcomer can guess. `make demo` is the main job, `make test`
# runs every test (unit, plugins, end to end); .ci/run calls `make test`.
GO      ?= go
BIN     := bin
PKGS    := ./...

.PHONY: all build test unit e2e bench fuzz plugins demo deps vet clean

all: build

build:
	$(GO) build -o $(BIN)/ ./cmd/...

# Everything CI runs. deps installs the Debian packages the real-part tests
# need (Prosody, prosody-modules, toolchains) when they are missing.
test: deps vet plugins
	./scripts/profile-test-all.sh
	$(GO) test -count=1 $(PKGS)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet $(PKGS)

# Every sample WebAssembly plugin, built from source (plugins/build/).
plugins:
	./plugins/build.sh

unit:
	$(GO) test -short -count=1 $(PKGS)

deps:
	./scripts/install-deps.sh

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Short fuzzing of every parser, for local use (CI runs the seed corpora as
# part of `make test`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse$$ -fuzztime 30s ./engine/
	$(GO) test -run '^$$' -fuzz FuzzParseEnable -fuzztime 30s ./engine/
	$(GO) test -run '^$$' -fuzz FuzzProvisionEncrypted -fuzztime 30s ./profiles/
	$(GO) test -run '^$$' -fuzz FuzzMinimize -fuzztime 30s ./profiles/

# The main job: Prosody + bridge + push2d on 127.0.0.1, a push arriving.
# make demo ARGS=-keep keeps the stack running.
demo:
	./examples/demo.sh $(ARGS)

# End-to-end tests alone (real Prosody, bridge, push2d, mellium clients).
e2e: deps
	$(GO) test -count=1 -v -run . ./internal/e2e/

clean:
	rm -rf $(BIN)
