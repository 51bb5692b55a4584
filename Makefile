# gatehouse: `make run` and `make test` work on a fresh Debian 12 machine;
# each target installs what it needs first (scripts/deps.sh).
BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)

.PHONY: all build run run-cluster test bench bench-attack clean format deps

all: build

deps:
	@scripts/deps.sh build

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# make run [LISTEN=HOST:PORT] [ADMIN_LISTEN=HOST:PORT]: other ports than
# conf/dev.conf's 127.0.0.1:8080 and :9091 (GATEHOUSE_LISTEN and
# GATEHOUSE_ADMIN_LISTEN in the environment work too, and win). Builds only
# the server, without make's "Entering directory" lines.
run: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target gatehouse -- --no-print-directory
	./$(BUILD)/gatehouse serve --config conf/dev.conf$(if $(LISTEN), --listen $(LISTEN))$(if $(ADMIN_LISTEN), --admin-listen $(ADMIN_LISTEN))

# make run-cluster: PostgreSQL, three nodes and HAProxy on loopback
# (scripts/cluster.sh up; `scripts/cluster.sh down` stops them)
run-cluster: deps
	@scripts/deps.sh cluster
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target gatehouse -- --no-print-directory
	@GATEHOUSE=$(CURDIR)/$(BUILD)/gatehouse scripts/cluster.sh up

test:
	@scripts/deps.sh test
	@tests/run-all.sh

bench:
	@scripts/deps.sh bench
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@bench/run.sh

# the attack lab: scenarios of bench/scenarios/ against gatehouse and against
# nginx limits in front of it; writes bench/results/attack-report.md (~10 min)
bench-attack:
	@scripts/deps.sh bench
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)
	@bench/attack.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) test-output

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/unit/*.c' 'tests/unit/*.h' 'fuzz/*.c' 'bench/tools/*.c')
