# rolloutbot — `make demo` shows it working, `make test` runs every test.
GO       ?= go
BIN      := bin/rolloutbot
# The container image's build: static, no cgo, trimmed (see deploy/Dockerfile).
LDFLAGS  := -s -w

.PHONY: build test lint deps demo bench bench-go bench-sshd image-build clean screenshots

# -buildvcs=auto: the commit goes into `rolloutbot --version` from a git
# checkout (some machines turn it off in GOFLAGS), and is left out elsewhere.
build:
	$(GO) build -trimpath -buildvcs=auto -o $(BIN) ./cmd/bot

# deps installs what the tests talk to when it is missing: OpenSSH's server
# (a real sshd is tested) and PostgreSQL's server (the tests start a
# throwaway one). Debian/Ubuntu, as root or with sudo.
deps:
	@scripts/deps.sh

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

test: deps lint
	$(GO) test -race -count=1 -timeout 45m ./...

demo: build
	./$(BIN) demo

# bench: Go benchmarks on the in-process simulator (1,000 and 10,000 hosts,
# beside the x/crypto/ssh floor), then the real sshd fleet beside the peers.
bench: bench-go bench-sshd

# Each benchmark in its own process, so one's heap does not inflate another's peak RSS.
bench-go:
	$(GO) test -run '^$$' -bench 'Rollout' -benchtime 1x -timeout 60m ./bench/
	$(GO) test -run '^$$' -bench 'SlackCalls' -benchtime 1x -timeout 60m ./bench/
	$(GO) test -run '^$$' -bench 'EngineMemory' -benchtime 1x -timeout 60m ./bench/
	$(GO) test -run '^$$' -bench 'StoreShare' -benchtime 1x -timeout 60m ./bench/
	$(GO) test -run '^$$' -bench 'WebHostTable' -benchtime 50x -timeout 30m ./bench/

bench-sshd: build
	scripts/bench-sshd.sh 200 50

# screenshots: PNGs of the web view's main pages (docs/screenshots/, shown in
# the README), taken by headless Chromium during a simulated rollout.
screenshots: deps
	WEB_SCREENSHOTS=$(CURDIR)/docs/screenshots $(GO) test -count=1 -run '^TestScreenshots$$' -v ./web/

# image-build runs the Dockerfile's build step without a Docker engine.
image-build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/rolloutbot-static ./cmd/bot

clean:
	rm -rf bin
