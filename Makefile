# Outpost — `make help` lists the targets.
#
# `make test` is what CI runs (.ci/run): on a fresh Debian machine with Go it
# installs the Debian packages the tests need, then runs lint, the race tests
# against private PostgreSQL and Mosquitto instances, the short fuzz runs,
# the whole suite under ARM emulation, and the cross builds.

SHELL    := /bin/bash
GO       ?= go
VERSION  := $(shell packaging/version.sh)
LDFLAGS  := -s -w -X main.version=$(VERSION)
GOBUILD  := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
FUZZTIME ?= 10s
BENCHCOUNT ?= 6
TESTFLAGS ?= -count=1 -timeout 15m

# The Debian packages the tests need, each with a file that shows it is there.
DEB_NEEDS := gcc:/usr/bin/gcc \
	libc6-dev:/usr/include/stdio.h \
	postgresql:/usr/lib/postgresql/*/bin/initdb \
	mosquitto:/usr/sbin/mosquitto \
	qemu-user-static:/usr/bin/qemu-arm-static

.PHONY: help build build-arm test test-race test-arm bench fuzz lint deps binfmt clean demo

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/:.*## /\t/' | expand -t 14

build: ## build the binaries for this machine into bin/
	$(GOBUILD) -o bin/ ./cmd/...
	bin/outpost version | grep -qF ' $(VERSION) '

build-arm: ## cross-build static binaries for the Pi: bin/linux_{arm64,armv6,armv7}/
	GOOS=linux GOARCH=arm64 $(GOBUILD) -o bin/linux_arm64/ ./cmd/...
	GOOS=linux GOARCH=arm GOARM=6 $(GOBUILD) -o bin/linux_armv6/ ./cmd/...
	GOOS=linux GOARCH=arm GOARM=7 $(GOBUILD) -o bin/linux_armv7/ ./cmd/...

test: deps lint test-race fuzz test-arm build build-arm ## everything CI checks (installs what it needs)
	@echo "make test: all passed (version $(VERSION))"

test-race: ## go test -race against private PostgreSQL and Mosquitto (they must be installed)
	OUTPOST_REQUIRE_SERVICES=1 $(GO) test -race $(TESTFLAGS) ./...

test-arm: deps binfmt ## the unit tests for arm64 and for ARMv6 (Pi Zero core) under qemu-user
	GOARCH=arm64 CGO_ENABLED=0 OUTPOST_REQUIRE_SERVICES=1 \
		$(GO) test $(TESTFLAGS) -exec qemu-aarch64-static ./...
	GOARCH=arm GOARM=6 QEMU_CPU=arm1176 CGO_ENABLED=0 OUTPOST_REQUIRE_SERVICES=1 \
		$(GO) test $(TESTFLAGS) -exec qemu-arm-static ./...

bench: ## benchmarks, BENCHCOUNT runs each, benchstat format in bench.txt
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) ./... | tee bench.txt

fuzz: ## run every fuzz target for FUZZTIME (default 10s; e.g. make fuzz FUZZTIME=5m)
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' --exclude-dir=packaging .); do \
		dir=./$$(dirname $${f#./}); \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			echo "fuzz $$dir $$t for $(FUZZTIME)"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 3s $$dir \
				| grep -v '^fuzz: elapsed' || exit 1; \
		done; \
	done

lint: ## gofmt, go vet (also for 32-bit ARM), staticcheck, the unit's security score
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOARCH=arm $(GO) vet ./...
	$(GO) tool staticcheck ./...
	@# The unit's exposure score (1.7 today) must not creep above 2.0.
	@if command -v systemd-analyze >/dev/null; then \
		systemd-analyze security --offline=true --threshold=20 systemd/outpost.service >/dev/null || \
		{ systemd-analyze security --offline=true systemd/outpost.service; exit 1; }; fi

deps: ## install the Debian packages the tests need (apt-get as root; otherwise names them)
	@missing=""; \
	for need in $(DEB_NEEDS); do \
		pkg=$${need%%:*}; file=$${need#*:}; \
		ls $$file >/dev/null 2>&1 || missing="$$missing $$pkg"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "missing Debian packages:$$missing — install them with: sudo apt-get install$$missing" >&2; exit 1; \
	fi; \
	echo "installing Debian packages:$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get -o DPkg::Lock::Timeout=600 update -qq && \
	apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $$missing

binfmt: ## let the kernel run ARM binaries through qemu (root; for tests that re-execute themselves)
	@if [ "$$(id -u)" != 0 ]; then echo "binfmt: not root, ARM child processes need binfmt_misc registered" >&2; exit 0; fi; \
	mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc; \
	for a in aarch64 arm; do \
		[ -e /proc/sys/fs/binfmt_misc/qemu-$$a ] || cat /usr/lib/binfmt.d/qemu-$$a.conf > /proc/sys/fs/binfmt_misc/register; \
	done

demo: ## run the edge daemon on embedded defaults (arrives with the daemon issue)
	@echo "make demo arrives with the edge daemon (issue 7); nothing to run yet" >&2; exit 1

clean: ## remove build output
	rm -rf bin dist bench.txt
