# pushdeploy: build, test, demo, bench. Every target works on a fresh Debian machine with Go
# (`.ci/run` installs the Debian packages the tests use).
GO          ?= go
VERSION     ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
BIN         := bin/pushdeploy
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: build deb test test-unprivileged fuzz stress lint demo bench clean

# A static binary (no cgo: no libc to match on the host it is copied to).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/pushdeploy

# The Debian package dist/pushdeploy_<version>_amd64.deb, built by dpkg-deb (see
# packaging/build-deb.sh for the version and what the package holds).
deb:
	GO=$(GO) packaging/build-deb.sh dist

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# -race needs cgo. scripts/testsum prints the packages, the failed tests' output and a closing
# "tests: N passed, N failed, N skipped"; under CI=true a skipped test fails the run.
test: lint test-unprivileged fuzz
	$(GO) run ./scripts/testsum $(GO) test -race -count=1 -timeout 12m -json ./...

# Go's native fuzzer on what reads untrusted input: webhooks, service.json, agent.yaml, the
# configuration store's documents and env files, a pushed tree's names and modes and whole
# trees through the release builder. Seeds include ../shared/corpus; a crasher
# lands in the package's testdata/fuzz and, committed, runs with every `go test`.
FUZZTIME     ?= 20s
FUZZ_TARGETS := hooks:FuzzRead hooks:FuzzParsePush renv:FuzzFlatten renv:FuzzRenderEnv units:FuzzParse config:FuzzParse \
                release:FuzzEntryPath release:FuzzStore_BuildTree
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; \
	  out=$$($(GO) test -run '^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) ./$$pkg 2>&1) || { echo "$$out"; exit 1; }; \
	  n=$$(echo "$$out" | sed -n 's/.*execs: \([0-9]*\) .*/\1/p' | tail -1); \
	  echo "fuzz $$pkg.$$fn: $${n:-0} executions past the seeds in $(FUZZTIME), no failure"; \
	done

# Every test again with PUSHDEPLOY_STRESS=1, which runs the long ones at full size (a release
# of one 200 MB file and one of 50,000 files, their peak RSS bounded; 300 kill -9s of the
# agent mid-deploy instead of 40), without -race: its shadow memory would hide what they
# measure.
stress:
	PUSHDEPLOY_STRESS=1 $(GO) run ./scripts/testsum $(GO) test -count=1 -timeout 60m -json ./...

# The rollout engine's table tests (a fake service manager) need no privilege: run as root,
# they run again as nobody, so nothing in them can come to depend on root.
test-unprivileged:
	@mkdir -p bin && $(GO) test -c -o bin/rollout.test ./rollout && chmod 755 bin bin/rollout.test
	@run="$(CURDIR)/bin/rollout.test -test.count=1"; \
	  if [ "$$(id -u)" = 0 ]; then run="setpriv --reuid=65534 --regid=65534 --clear-groups $$run"; fi; \
	  out=$$(cd / && $$run 2>&1) || { echo "$$out"; exit 1; }
	@echo "rollout table tests: passed as uid $$(if [ "$$(id -u)" = 0 ]; then echo 65534; else id -u; fi)"

demo: build
	./scripts/demo.sh

bench: build
	./scripts/bench.sh

clean:
	rm -rf bin dist
