# Sourced by the build scripts: where the Rust-for-Linux toolchain lives.
# rustup's rustc (first on PATH) has no rust-src, so Debian's is named explicitly.

log() { printf '[balloon_rs] %s\n' "$*" >&2; }
die() { printf '[balloon_rs] error: %s\n' "$*" >&2; exit 1; }

RUSTC=${RUSTC:-/usr/bin/rustc}
RUSTDOC=${RUSTDOC:-/usr/bin/rustdoc}
CLIPPY_DRIVER=${CLIPPY_DRIVER:-/usr/bin/clippy-driver}
BINDGEN_VERSION=0.73.2
BINDGEN=${BINDGEN:-${CARGO_HOME:-$HOME/.cargo}/bin/bindgen}

# The paths that depend on what is installed: call after installing (setup.sh
# does, once its packages are in), never at source time on a fresh machine.
toolchain_paths() {
	if [ -z "${RUST_LIB_SRC:-}" ] && [ -x "$RUSTC" ]; then
		RUST_LIB_SRC=/usr/src/rustc-$("$RUSTC" --version | awk '{print $2}')/library
	fi
	RUST_LIB_SRC=${RUST_LIB_SRC:-}
	KMAKE_VARS=(LLVM=1 RUSTC="$RUSTC" RUSTDOC="$RUSTDOC" RUST_LIB_SRC="$RUST_LIB_SRC"
		BINDGEN="$BINDGEN" CLIPPY_DRIVER="$CLIPPY_DRIVER")
}
