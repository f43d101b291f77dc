# balloon_rs: see README.md for what each target does.
#
# `make` builds balloon_rs.ko against KDIR (default: the project's test
# kernel in build/kernel, from `make kernel`).

KDIR ?= $(CURDIR)/build/kernel
# bash with pipefail: test output is tee'd into build/ for `make readme`.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
RUSTC ?= /usr/bin/rustc
RUSTDOC ?= /usr/bin/rustdoc
CLIPPY_DRIVER ?= /usr/bin/clippy-driver
RUSTFMT ?= rustfmt
BINDGEN ?= $(or $(CARGO_HOME),$(HOME)/.cargo)/bin/bindgen
RUST_LIB_SRC ?= /usr/src/rustc-$(shell $(RUSTC) --version 2>/dev/null | cut -d' ' -f2)/library
# Passed to the kernel build only: cargo must keep using rustup's rustc.
KENV = RUSTC=$(RUSTC) RUSTDOC=$(RUSTDOC) CLIPPY_DRIVER=$(CLIPPY_DRIVER) BINDGEN=$(BINDGEN) RUST_LIB_SRC=$(RUST_LIB_SRC)

KMAKE = $(MAKE) -C $(KDIR) M=$(CURDIR) LLVM=1 RUSTC=$(RUSTC) RUSTDOC=$(RUSTDOC) \
	RUST_LIB_SRC=$(RUST_LIB_SRC) BINDGEN=$(BINDGEN) CLIPPY_DRIVER=$(CLIPPY_DRIVER)

# The crate root and the balloon logic at the top, the kernel abstractions in
# abstractions/ (one crate: rustc follows the `mod` declarations).
MODULE_SRCS = $(wildcard $(CURDIR)/*.rs $(CURDIR)/abstractions/*.rs)
GUEST_TARGET = x86_64-unknown-linux-gnu
GUEST_BIN = target/$(GUEST_TARGET)/release/balloon-guest

.PHONY: all module setup kernel kernel-debug clippy rustfmt rustfmtcheck guest \
	test test-unit test-guest test-host test-debug test-reliability module-debug bench run inflate compare demo simulate readme clean help

all: module

module: balloon_rs.ko

balloon_rs.ko: $(MODULE_SRCS) Kbuild
	@test -f $(KDIR)/Module.symvers || { echo "error: no built kernel at $(KDIR); run 'make kernel' or pass KDIR=" >&2; exit 1; }
	$(KMAKE) modules

setup:
	@bash scripts/setup.sh

# Every target that needs a package depends on setup, so that a fresh clone
# needs no command before `make demo` or `make test` (setup is quiet when done).
kernel: setup
	@$(KENV) bash kernel/build.sh normal build/kernel

kernel-debug: setup
	@$(KENV) bash kernel/build.sh debug build/kernel-debug

clippy: kernel
	@test -f $(KDIR)/Module.symvers || { echo "error: no built kernel at $(KDIR); run 'make kernel'" >&2; exit 1; }
	@touch $(MODULE_SRCS)
	@$(KMAKE) CLIPPY=1 modules 2>&1 | tee build/clippy.log
	@! grep -q '^\(warning\|error\)' build/clippy.log || { echo "clippy: the module has warnings (see above)" >&2; exit 1; }
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p host-stub --no-default-features --all-targets -- -D warnings

rustfmt: setup
	$(RUSTFMT) --edition 2021 --config-path kernel/rustfmt.toml $(MODULE_SRCS)
	cargo fmt --all

rustfmtcheck: setup
	$(RUSTFMT) --check --edition 2021 --config-path kernel/rustfmt.toml $(MODULE_SRCS)
	cargo fmt --all -- --check

guest: setup $(GUEST_BIN)

# The guest binary links host-stub/mechanisms (balloon-guest mechanisms).
$(GUEST_BIN): $(wildcard guest/src/*.rs host-stub/mechanisms/src/*.rs) guest/Cargo.toml \
		host-stub/mechanisms/Cargo.toml
	RUSTFLAGS="-C target-feature=+crt-static" cargo build --release -p balloon-guest --target $(GUEST_TARGET)

# Unit tests: the host crates, the module's pure arithmetic (policy.rs), and
# the host stub's pure policy properties and simulator (no kernel, no guest).
test-unit: setup
	cargo test --no-fail-fast --workspace --lib --bins
	cargo test --no-fail-fast -p host-stub --test policy_props --test simulate --test readme
	cargo test --no-fail-fast -p host-stub --no-default-features --lib

# Guest tests: boot QEMU guests with both drivers.
test-guest: kernel module guest
	@mkdir -p build
	cargo test --no-fail-fast -p qemu-test --test '*' -- --test-threads=$(or $(GUEST_JOBS),2) 2>&1 | tee build/test-guest.log
	@if pgrep -af 'qemu-system[-]x86.*balloon_rs-' ; then echo "error: guest tests left the QEMU processes above running" >&2; exit 1; fi

# Host-stub tests with real guests, one at a time (they change machine-wide
# settings: KSM, zswap, swap, cgroups, and check every one is back
# afterwards); the pure ones are in test-unit.
test-host: kernel module guest
	@mkdir -p build
	cargo test --no-fail-fast -p host-stub --test cli --test guests --test libvirt --test cgroup_v2 -- --test-threads=1 2>&1 | tee build/test-host.log
	@if pgrep -af 'qemu-system[-]x86.*balloon_rs-' ; then echo "error: host-stub tests left the QEMU processes above running" >&2; exit 1; fi

test: test-unit test-guest test-host

# The module built against the debug kernel, in a copy of the sources
# (Kbuild builds in the source directory).
DEBUG_MOD_DIR = $(CURDIR)/build/module-debug
# Debug guests: a KASAN kernel under TCG is slow, not stalled (RCU stall
# timeout 300 s), and interprets the i440fx _PRT method's AML loop too slowly
# for ACPICA's 30 s loop timeout, which leaves the balloon without an
# interrupt: acpi=noirq routes PCI interrupts from the BIOS's $PIR table
# instead (ACPI hotplug and everything else still use ACPI). See README.
DEBUG_APPEND = rcupdate.rcu_cpu_stall_timeout=300 acpi=noirq

module-debug: kernel-debug
	@mkdir -p $(DEBUG_MOD_DIR)/abstractions
	@cp $(wildcard $(CURDIR)/*.rs) Kbuild $(DEBUG_MOD_DIR)/
	@cp $(wildcard $(CURDIR)/abstractions/*.rs) $(DEBUG_MOD_DIR)/abstractions/
	$(MAKE) -C $(CURDIR)/build/kernel-debug M=$(DEBUG_MOD_DIR) LLVM=1 RUSTC=$(RUSTC) RUSTDOC=$(RUSTDOC) \
		RUST_LIB_SRC=$(RUST_LIB_SRC) BINDGEN=$(BINDGEN) CLIPPY_DRIVER=$(CLIPPY_DRIVER) modules

# Every guest test on the debug kernel (KASAN, lockdep, DEBUG_PAGEALLOC,
# kmemleak): any report fails the test through the console-log check.
test-debug: module-debug guest
	BALLOON_RS_KDIR=$(CURDIR)/build/kernel-debug BALLOON_RS_MODULE=$(DEBUG_MOD_DIR)/balloon_rs.ko BALLOON_RS_GUEST_MIB=1024 \
		BALLOON_RS_APPEND="$(DEBUG_APPEND)" \
		cargo test --no-fail-fast -p qemu-test --test '*' -- --test-threads=$(or $(GUEST_JOBS),1)

# Reliability: every guest test on the debug kernel, plus the ones that need
# it (page-allocation fault injection), then the host stub's abuse tests.
# About 90 minutes; not part of `make test`.
test-reliability: module module-debug guest
	BALLOON_RS_KDIR=$(CURDIR)/build/kernel-debug BALLOON_RS_MODULE=$(DEBUG_MOD_DIR)/balloon_rs.ko BALLOON_RS_GUEST_MIB=1024 \
		BALLOON_RS_APPEND="$(DEBUG_APPEND)" \
		cargo test --no-fail-fast -p qemu-test --test '*' -- --include-ignored --test-threads=$(or $(GUEST_JOBS),1)
	cargo test --no-fail-fast -p host-stub --test cli --test guests -- --test-threads=1
	@if pgrep -af 'qemu-system[-]x86.*balloon_rs-' ; then echo "error: reliability tests left the QEMU processes above running" >&2; exit 1; fi

# Benchmark (not a test): balloon_rs against the C driver, side by side.
bench: kernel module guest
	cargo run -q --release -p qemu-test --bin balloon-bench
	cargo run -q --release -p qemu-test --bin balloon-static

run: kernel module guest
	cargo run -q -p qemu-test --bin balloon-run -- $(RUN_ARGS)

# For scripts: boot a guest, set targets, print the result (text or --json),
# exit non-zero if a target is missed or the console has a kernel report.
inflate: kernel module guest
	cargo run -q --release -p qemu-test --bin balloon-inflate -- $(or $(INFLATE_ARGS),--help)

# For reviewers: every driver scenario against both drivers, one table.
compare: kernel module guest
	cargo run -q --release -p qemu-test --bin balloon-compare -- $(COMPARE_ARGS)

# The main job: three 512 MiB guests on a 1 GiB host, managed by balloon-host.
demo: kernel module guest
	cargo run -q --release -p host-stub --bin balloon-host -- run host-stub/scenarios/demo.toml $(DEMO_ARGS)

# Policies compared on a simulated host (500 VMs, a day).
simulate: setup
	cargo run -q --release -p host-stub --bin balloon-host -- simulate $(SIM_ARGS)

# README's generated blocks: the test tables from the sources and the last
# `make test` run's logs, the simulate table from `balloon-host simulate`.
readme: setup
	@test -f build/test-guest.log -a -f build/test-host.log || { echo "error: no test logs in build/: run make test first" >&2; exit 1; }
	cargo run -q --release -p host-stub --bin balloon-host -- simulate > build/simulate.txt
	cargo run -q -p qemu-test --bin readme-tables -- README.md build/test-guest.log build/test-host.log build/simulate.txt

clean:
	-$(KMAKE) clean
	cargo clean
	rm -rf build

help:
	@sed -n '/^## Make targets/,/^## /p' README.md
