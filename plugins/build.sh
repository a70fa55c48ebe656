#!/usr/bin/env bash
# build.sh — build every sample plugin from source into
# plugins/build/<name>-<lang>.wasm, installing the toolchains it needs first.
#
#   plugins/<name>-go/               Go, GOOS=wasip1 GOARCH=wasm -buildmode=c-shared
#   plugins/<name>-c/                clang --target=wasm32 + wasm-ld, no libc
#   plugins/<name>-rust/lib.rs       Debian's /usr/bin/rustc, wasm32-unknown-unknown, no crates
#   plugins/<name>-assemblyscript/   asc from sdk/assemblyscript (npm ci, pinned by package-lock.json)
#
# Toolchains (Debian 12 packages, installed with apt-get when missing, as
# root or through sudo): clang lld (C), rustc libstd-rust-dev-wasm32 (Rust),
# nodejs npm (only if node is missing; AssemblyScript 0.28 wants node >= 20).
# Go is the one building the rest of the project.
#
# Idempotent: a plugin whose output is newer than its sources, its SDK and
# this script is not rebuilt; with everything installed it touches no
# network. Outputs are written to a temporary file and renamed, so a Watcher
# pointed at plugins/build never sees half a module. Any failure stops the
# script with a non-zero status.
#
# Usage: plugins/build.sh [NAME-LANG ...]   (default: every plugin)
# Environment: PUSH2_PLUGINS_OUT overrides the output directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="${PUSH2_PLUGINS_OUT:-$here/build}"
sdk="$root/sdk"
script="$here/build.sh"

log() { printf 'plugins/build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

is_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

apt_updated=0
apt_install() {
	local missing=()
	for p in "$@"; do
		is_installed "$p" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	command -v apt-get >/dev/null 2>&1 || die "missing packages ${missing[*]} and no apt-get to install them"
	local sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || die "missing packages ${missing[*]}: run as root or install them"
		sudo=(sudo)
	fi
	log "installing ${missing[*]}"
	if [ $apt_updated -eq 0 ]; then
		"${sudo[@]}" apt-get update -qq || die "apt-get update failed"
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
}

# up_to_date OUTPUT DIR... — the output exists and nothing under the
# directories (or this script) is newer.
up_to_date() {
	local o="$1"
	shift
	[ -f "$o" ] || return 1
	[ "$script" -nt "$o" ] && return 1
	local newer
	newer="$(find "$@" -type f -newer "$o" -not -path '*/node_modules/*' -print -quit 2>/dev/null)"
	[ -z "$newer" ]
}

need_c() {
	apt_install clang lld
	command -v clang >/dev/null || die "clang not found after installing it"
	command -v wasm-ld >/dev/null || die "wasm-ld (lld) not found after installing it"
}

need_rust() {
	apt_install rustc libstd-rust-dev-wasm32
	[ -x /usr/bin/rustc ] || die "/usr/bin/rustc not found after installing rustc"
}

as_ready=0
need_as() {
	[ $as_ready -eq 1 ] && return 0
	command -v node >/dev/null 2>&1 || apt_install nodejs npm
	command -v npm >/dev/null 2>&1 || apt_install npm
	if ! [ -x "$sdk/assemblyscript/node_modules/.bin/asc" ] ||
		[ "$sdk/assemblyscript/package-lock.json" -nt "$sdk/assemblyscript/node_modules/.package-lock.json" ]; then
		log "npm ci in sdk/assemblyscript"
		(cd "$sdk/assemblyscript" && npm ci --no-audit --no-fund --loglevel=error) || die "npm ci failed in sdk/assemblyscript"
	fi
	as_ready=1
}

# C flags of sdk/c/push2.h: freestanding, no libc, a reactor with no entry.
# shellcheck disable=SC2054 # the commas belong to the -Wl, options
CFLAGS=(--target=wasm32 -O2 -ffreestanding -nostdlib -mbulk-memory -Wall -Wextra -Werror
	-Wl,--no-entry -Wl,-z,stack-size=65536 -Wl,--strip-all)

build_c() { # dir name
	need_c
	local srcs=("$1"/*.c)
	[ -e "${srcs[0]}" ] || die "$2: no .c files in $1"
	clang "${CFLAGS[@]}" -I "$sdk/c" -o "$tmp" "${srcs[@]}"
}

build_go() {
	(cd "$root" && GOOS=wasip1 GOARCH=wasm go build -buildvcs=false -trimpath -buildmode=c-shared -o "$tmp" "./plugins/$2")
}

build_rust() {
	need_rust
	[ -f "$1/lib.rs" ] || die "$2: no lib.rs in $1"
	/usr/bin/rustc --edition 2021 --target wasm32-unknown-unknown --crate-type cdylib \
		-C opt-level=s -C strip=symbols -o "$tmp" "$1/lib.rs"
}

build_as() {
	need_as
	[ -f "$1/index.ts" ] || die "$2: no index.ts in $1"
	# --use abort= must name the SDK's handler by its path relative to the
	# compiler's working directory, without the extension.
	local rel
	rel="$(realpath --relative-to="$1" "$sdk/assemblyscript/push2")"
	(cd "$1" && "$sdk/assemblyscript/node_modules/.bin/asc" index.ts -O3 --runtime incremental \
		--use "abort=$rel/push2Abort" -o "$tmp")
}

mkdir -p "$out"
# One build at a time per output directory: test packages that run in
# parallel each call this script, and two rustc runs writing the same
# intermediate files break each other's link.
exec 9>"$out/.lock"
flock 9
if [ $# -gt 0 ]; then
	plugins=("$@")
else
	plugins=()
	for d in "$here"/*/; do
		d="${d%/}"
		n="$(basename "$d")"
		[ "$n" = build ] && continue
		plugins+=("$n")
	done
fi

built=0
skipped=0
for name in "${plugins[@]}"; do
	dir="$here/$name"
	[ -d "$dir" ] || die "no plugin directory plugins/$name"
	lang="${name##*-}"
	case "$lang" in
	go) sdkdir="$sdk/go" ;;
	c) sdkdir="$sdk/c" ;;
	rust) sdkdir="$sdk/rust" ;;
	assemblyscript) sdkdir="$sdk/assemblyscript" ;;
	*) die "plugins/$name: the directory name must end in -go, -c, -rust or -assemblyscript" ;;
	esac
	dest="$out/$name.wasm"
	# Toolchains are checked even for up-to-date plugins, so a machine
	# without them fails here and not later.
	case "$lang" in
	c) need_c ;;
	rust) need_rust ;;
	assemblyscript) need_as ;;
	esac
	if up_to_date "$dest" "$dir" "$sdkdir"; then
		skipped=$((skipped + 1))
		continue
	fi
	tmp="$(mktemp "$out/.$name.XXXXXX")"
	trap 'rm -f "$tmp"' EXIT
	case "$lang" in
	go) build_go "$dir" "$name" ;;
	c) build_c "$dir" "$name" ;;
	rust) build_rust "$dir" "$name" ;;
	assemblyscript) build_as "$dir" "$name" ;;
	esac || die "building plugins/$name failed"
	[ -s "$tmp" ] || die "building plugins/$name produced nothing"
	chmod 0644 "$tmp"
	mv -f "$tmp" "$dest"
	trap - EXIT
	log "built $(realpath --relative-to="$root" "$dest") ($(stat -c %s "$dest") bytes)"
	built=$((built + 1))
done
log "$built built, $skipped up to date, in $(realpath --relative-to="$root" "$out" 2>/dev/null || echo "$out")"
