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
# Packages are stamped with the commit time, so two builds are byte-identical.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH
# The commands the packages ship (packaging/main.go has the package table).
DEB_CMDS := ./cmd/outpost ./cmd/outpost-receiver
# The outpost .deb of this version for a Debian architecture.
deb_of = dist/outpost_$(VERSION)-1_$(1).deb

# The Debian packages the tests need, each with a file that shows it is there.
DEB_NEEDS := gcc:/usr/bin/gcc \
	libc6-dev:/usr/include/stdio.h \
	postgresql:/usr/lib/postgresql/*/bin/initdb \
	mosquitto:/usr/sbin/mosquitto \
	qemu-user-static:/usr/bin/qemu-arm-static \
	lintian:/usr/bin/lintian \
	systemd-container:/usr/bin/systemd-nspawn \
	debootstrap:/usr/sbin/debootstrap

.PHONY: help build build-arm test test-race test-e2e test-arm bench bench-e2e fuzz lint deps binfmt clean demo \
	deb lintian test-packages test-packages-arm

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -e 's/:.*## /\t/' | expand -t 14

build: ## build the binaries for this machine into bin/
	$(GOBUILD) -o bin/ ./cmd/...
	bin/outpost version | grep -qF ' $(VERSION) '

build-arm: ## cross-build static binaries for the Pi: bin/linux_{arm64,armv6,armv7}/
	GOOS=linux GOARCH=arm64 $(GOBUILD) -o bin/linux_arm64/ ./cmd/...
	GOOS=linux GOARCH=arm GOARM=6 $(GOBUILD) -o bin/linux_armv6/ ./cmd/...
	GOOS=linux GOARCH=arm GOARM=7 $(GOBUILD) -o bin/linux_armv7/ ./cmd/...

test: deps lint test-race fuzz test-e2e test-arm build build-arm deb lintian test-packages test-packages-arm ## everything CI checks (installs what it needs)
	@echo "make test: all passed (version $(VERSION))"

test-race: ## go test -race against private PostgreSQL and Mosquitto (they must be installed)
	OUTPOST_REQUIRE_SERVICES=1 $(GO) test -race $(TESTFLAGS) ./...

test-arm: deps binfmt deb ## the unit tests and the packaged binaries for arm64 and ARMv6 (Pi Zero core) under qemu-user
	GOARCH=arm64 CGO_ENABLED=0 OUTPOST_REQUIRE_SERVICES=1 OUTPOST_EMULATED=1 \
		$(GO) test $(TESTFLAGS) -exec qemu-aarch64-static ./...
	GOARCH=arm GOARM=6 QEMU_CPU=arm1176 CGO_ENABLED=0 OUTPOST_REQUIRE_SERVICES=1 OUTPOST_EMULATED=1 \
		$(GO) test $(TESTFLAGS) -exec qemu-arm-static ./...
	@# The binaries as packaged; armhf on the Pi Zero's core, which rejects ARMv7 code.
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	for a in arm64:qemu-aarch64-static: armhf:qemu-arm-static:arm1176; do \
		IFS=: read -r arch qemu cpu <<<"$$a"; \
		dpkg-deb -x $(call deb_of,$$arch) $$tmp/$$arch; \
		echo "packaged $$arch binary under $$qemu$${cpu:+ (QEMU_CPU=$$cpu)}"; \
		env $${cpu:+QEMU_CPU=$$cpu} $$qemu $$tmp/$$arch/usr/bin/outpost version | grep -F ' $(VERSION) '; \
		env $${cpu:+QEMU_CPU=$$cpu} $$qemu $$tmp/$$arch/usr/bin/outpost config check \
			--config packaging/outpost/outpost.yaml >/dev/null; \
	done

deb: ## build the .deb packages (amd64, arm64, armhf) into dist/, reproducibly
	GOOS=linux GOARCH=amd64 $(GOBUILD) -o bin/linux_amd64/ $(DEB_CMDS)
	GOOS=linux GOARCH=arm64 $(GOBUILD) -o bin/linux_arm64/ $(DEB_CMDS)
	GOOS=linux GOARCH=arm GOARM=6 $(GOBUILD) -o bin/linux_armv6/ $(DEB_CMDS)
	cd packaging && $(GO) build -o ../bin/outpost-packaging .
	rm -f dist/*.deb
	bin/outpost-packaging -root . -out dist -version $(VERSION)
	@# Reproducible: a second build of the same tree is byte-identical.
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		bin/outpost-packaging -root . -out $$tmp -version $(VERSION) >/dev/null && \
		for f in dist/*.deb; do cmp $$f $$tmp/$$(basename $$f) || exit 1; done && \
		echo "deb: two builds byte-identical"
	@ls -l dist/*.deb

lintian: deps deb ## lintian on every .deb (errors and warnings fail)
	lintian --fail-on error,warning --pedantic --info dist/*.deb

test-packages: deps deb ## install, reload, watchdog, upgrade and purge the amd64 package under systemd (nspawn; root)
	packaging/test/boot-test.sh amd64

test-packages-arm: deps binfmt deb ## the same for the arm64 and armhf packages, under qemu-user
	packaging/test/boot-test.sh arm64
	packaging/test/boot-test.sh armhf

test-e2e: deps ## the whole pipeline on the real binaries: daemon → HTTP/MQTT → receiver → Postgres, under faults
	OUTPOST_REQUIRE_SERVICES=1 $(GO) test -tags e2e -count=1 -timeout 15m -v ./internal/e2e 2>&1 | \
		grep -E '^(---|ok|FAIL|PASS|panic)|e2e_test.go'; exit $${PIPESTATUS[0]}

bench: ## benchmarks, BENCHCOUNT runs each, benchstat format in bench.txt
	$(GO) test -run '^$$' -bench . -benchmem -count $(BENCHCOUNT) ./... | tee bench.txt

# bench-e2e: the drain of a BACKLOG-reading spool (default 1M) over HTTP and
# MQTT beside the same run's raw COPY, and the daemon's daily life (10
# sensors at 1 Hz for LIFE). Not part of `make test`.
BACKLOG ?= 1000000
LIFE    ?= 60s
bench-e2e: deps ## end-to-end figures on the real binaries (BACKLOG=1000000 LIFE=60s), in bench-e2e.txt
	OUTPOST_REQUIRE_SERVICES=1 $(GO) test -tags e2e -run '^$$' -bench . -benchtime 1x -count 1 -timeout 60m \
		./internal/e2e -args -backlog=$(BACKLOG) -life=$(LIFE) 2>&1 | \
		grep -E '^(Benchmark|goos|goarch|pkg|cpu|ok|FAIL|PASS|panic|---)|_test.go' | tee bench-e2e.txt; \
		exit $${PIPESTATUS[0]}

fuzz: ## run every fuzz target for FUZZTIME (default 10s; e.g. make fuzz FUZZTIME=5m)
	@# Go 1.26's coordinator can fail a target with a bare "context deadline
	@# exceeded" as -fuzztime ends (golang/go#75804, fixed in Go 1.27): such a
	@# run, with no failing input written, is tried again, up to 3 times.
	@set -eo pipefail; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' --exclude-dir=packaging .); do \
		dir=./$$(dirname $${f#./}); \
		for t in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$f); do \
			for try in 1 2 3; do \
				echo "fuzz $$dir $$t for $(FUZZTIME)"; \
				if out=$$($(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 3s $$dir 2>&1); then \
					echo "$$out" | grep -v '^fuzz: elapsed'; break; fi; \
				echo "$$out" | grep -v '^fuzz: elapsed'; \
				if ! grep -q 'context deadline exceeded' <<<"$$out" || grep -q 'Failing input written' <<<"$$out" || [ $$try = 3 ]; then exit 1; fi; \
				echo "fuzz: Go's coordinator race (golang/go#75804), no failing input: trying again"; \
			done; \
		done; \
	done

lint: ## gofmt, go vet (also for 32-bit ARM), staticcheck, the unit's security score
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOARCH=arm $(GO) vet ./...
	$(GO) tool staticcheck ./...
	$(GO) vet -tags e2e ./internal/e2e
	$(GO) tool staticcheck -tags e2e ./internal/e2e
	cd packaging && $(GO) vet ./...
	@# The units' exposure scores (1.7 and 1.1 today) must not creep above 2.0.
	@if command -v systemd-analyze >/dev/null; then for u in systemd/*.service; do \
		systemd-analyze security --offline=true --threshold=20 $$u >/dev/null || \
		{ systemd-analyze security --offline=true $$u; exit 1; }; done; fi

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

demo: build ## run the receiver (SQLite) and the daemon (sim sensors, HTTP uplink) in var/demo until Ctrl-C
	@testdata/demo/demo.sh

clean: ## remove build output
	rm -rf bin dist bench.txt
