#!/usr/bin/env bash
# Build the balloon_rs test kernel: Debian's linux-source-6.12 tarball, the
# project's bindings patch, tinyconfig plus the project's config fragment(s),
# built with LLVM=1 and Debian's rustc.
#
# usage: kernel/build.sh normal|debug LINK
#   LINK  a path (e.g. build/kernel) made a symlink to the O= directory.
#
# Builds are cached outside the work tree in $BALLOON_RS_CACHE
# (default /var/cache/balloon_rs), keyed by kernel version, patch, config and
# toolchain versions, so new clones and CI reuse an identical kernel.
set -euo pipefail

variant=${1:?usage: kernel/build.sh normal|debug LINK}
link=${2:?usage: kernel/build.sh normal|debug LINK}
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=kernel/toolchain.sh
. "$here/toolchain.sh"
toolchain_paths

tarball=/usr/src/linux-source-6.12.tar.xz
[ -f "$tarball" ] || die "$tarball is missing: run 'make setup' (Debian package linux-source-6.12)"

patch_file="$here/balloon_rs-bindings.patch"
fragments=("$here/balloon_rs.config")
[ "$variant" = debug ] && fragments+=("$here/balloon_rs-debug.config")
[ "$variant" = normal ] || [ "$variant" = debug ] || die "unknown variant '$variant' (normal or debug)"

cache=${BALLOON_RS_CACHE:-/var/cache/balloon_rs}
# The Debian package version names the exact upstream point release.
pkgver=$(dpkg-query -W -f '${Version}' linux-source-6.12 2>/dev/null || stat -c %Y "$tarball")
src_key=$( (echo "$pkgver"; cat "$patch_file") | sha256sum | cut -c1-12)
out_key=$( (echo "$src_key"; cat "${fragments[@]}"; "$RUSTC" --version; "$BINDGEN" --version; clang --version | head -1) \
	| sha256sum | cut -c1-12)
src="$cache/src-$src_key"
out="$cache/out-$variant-$out_key"
mkdir -p "$cache"

# A second build of the same entry waits for the first (flock on the entry's
# lock file) instead of removing the directory under the running tar or make.
lock_entry() { # fd path
	eval "exec $1>\"\$2.lock\""
	if ! flock -n "$1"; then
		log "waiting for another build of $(basename "$2") to finish"
		flock "$1"
	fi
}

# 1. Unpack and patch (once per kernel version + patch).
lock_entry 8 "$src"
if [ ! -f "$src/.balloon_rs-ready" ]; then
	log "unpacking $tarball into $src"
	rm -rf "$src" "$src.tmp"
	mkdir -p "$src.tmp"
	tar -xf "$tarball" -C "$src.tmp" --strip-components=1
	log "applying $(basename "$patch_file")"
	patch -d "$src.tmp" -p1 --quiet --forward <"$patch_file" || die "the bindings patch does not apply to $pkgver"
	touch "$src.tmp/.balloon_rs-ready"
	mv "$src.tmp" "$src"
fi
kver=$(make -s -C "$src" kernelversion)

# 2. The build holds its own entry's lock; the source is only read from now on
# (another variant may configure against it at the same time).
lock_entry 9 "$out"
flock -u 8

mk() { make -s -C "$src" O="$out" "${KMAKE_VARS[@]}" "$@"; }

# 3. Configure and build (once per source + config + toolchain).
if [ ! -f "$out/.balloon_rs-built" ]; then
	mkdir -p "$out"
	log "configuring Linux $kver ($variant) in $out"
	mk tinyconfig >/dev/null
	KCONFIG_CONFIG="$out/.config" "$src/scripts/kconfig/merge_config.sh" -m -O "$out" \
		"$out/.config" "${fragments[@]}" >/dev/null
	mk olddefconfig >/dev/null
	# merge_config does not fail on a symbol that olddefconfig drops; check each.
	dropped=0
	while IFS= read -r line; do
		case "$line" in
		CONFIG_*=n)
			sym=${line%%=*}
			if grep -q "^$sym=" "$out/.config"; then
				echo "config: $sym should be off but is on" >&2; dropped=1
			fi ;;
		CONFIG_*=*)
			if ! grep -qx "$line" "$out/.config"; then
				echo "config: '$line' did not stick (now: $(grep "^${line%%=*}=" "$out/.config" || echo unset))" >&2
				dropped=1
			fi ;;
		esac
	done < <(cat "${fragments[@]}")
	[ "$dropped" = 0 ] || die "config symbols were dropped; a dependency is missing from the fragment"
	grep -qx 'CONFIG_RUST=y' "$out/.config" || die "CONFIG_RUST is off: run 'make setup' (rustc-web, rust-web-src, bindgen)"

	log "building Linux $kver ($variant) with $(nproc) jobs; this takes a few minutes"
	start=$(date +%s)
	if ! mk -j"$(nproc)" bzImage modules >"$out/build.log" 2>&1; then
		tail -n 40 "$out/build.log" >&2
		die "kernel build failed; full log in $out/build.log"
	fi
	log "built in $(( $(date +%s) - start )) s"
	touch "$out/.balloon_rs-built"
fi

[ -f "$out/arch/x86/boot/bzImage" ] || die "bzImage missing in $out"
[ -f "$out/drivers/virtio/virtio_balloon.ko" ] || die "virtio_balloon.ko missing in $out"
mkdir -p "$(dirname "$link")"
ln -sfn "$out" "$link"
log "$link -> $out (Linux $kver, $variant)"
