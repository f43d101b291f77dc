#!/usr/bin/env bash
# make setup: install every build dependency from Debian's packages and
# the Rust crate registry. Idempotent: quiet when everything is already there.
set -euo pipefail
. "$(dirname "$0")/../kernel/toolchain.sh"

# Debian packages (see ../shared/TOOLCHAIN.md for why each is needed).
packages=(
	linux-source-6.12                    # kernel source tarball
	rustc-web rust-web-src rust-web-clippy rustfmt-web  # rustc with rust-src, clippy
	clang libclang-dev lld llvm          # LLVM=1 kernel build, bindgen's libclang
	flex bison bc libelf-dev libssl-dev cpio kmod xz-utils patch make
	busybox-static                       # guest userland
	qemu-system-x86                      # the emulator
	pkg-config libfontconfig1-dev fonts-dejavu-core  # balloon-host's charts (plotters)
	util-linux procps                    # mkswap/swapon for the swap tier; pgrep/pkill in tests
	libvirt-dev libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients  # the libvirt backend and its test
)
missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	[ "$(id -u)" = 0 ] || die "need root to install: ${missing[*]}"
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || die "apt-get update failed"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
		|| die "apt-get install failed for: ${missing[*]}"
fi

# libvirt's QEMU driver runs QEMU as libvirt-qemu; the package's postinst
# does not create that user where there is no init system (TOOLCHAIN.md).
if ! getent passwd libvirt-qemu >/dev/null; then
	[ "$(id -u)" = 0 ] || die "need root to create the libvirt-qemu user"
	getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
	useradd --system --gid libvirt-qemu --home-dir /var/lib/libvirt --shell /usr/sbin/nologin libvirt-qemu \
		|| die "useradd libvirt-qemu failed"
	log "created the libvirt-qemu user"
fi

# bindgen: Debian's is too old for 6.12 (needs >= 0.65.1); pin a version.
if ! "$BINDGEN" --version 2>/dev/null | grep -qx "bindgen $BINDGEN_VERSION"; then
	command -v cargo >/dev/null || die "cargo not found: bindgen-cli is installed with cargo"
	log "installing bindgen-cli $BINDGEN_VERSION from the Rust crate registry (takes a few minutes)"
	cargo install --quiet --locked --root "$(dirname "$(dirname "$BINDGEN")")" bindgen-cli --version "$BINDGEN_VERSION" \
		|| die "cargo install bindgen-cli $BINDGEN_VERSION failed"
fi

# Sanity checks that name what is wrong, against what is installed now.
toolchain_paths
[ -x "$RUSTC" ] || die "$RUSTC missing (Debian package rustc-web)"
[ -d "$RUST_LIB_SRC" ] || die "$RUST_LIB_SRC missing: rust-web-src does not match $("$RUSTC" --version)"
[ -x "$CLIPPY_DRIVER" ] || die "$CLIPPY_DRIVER missing (Debian package rust-web-clippy)"
rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-gnu \
	|| log "note: rustup has no x86_64-unknown-linux-gnu target listed; the guest binary build may fail"
exit 0
