#!/usr/bin/env bash
# install-deps.sh — install the system packages that push2's end-to-end tests
# need on a Debian 12 (bookworm) machine, as root.
#
#   prosody          Debian 12's Prosody 0.12, the system install; the tests
#                    start private instances of it (internal/prosodytest).
#                    Pulls in lua5.4 and the Lua libraries it needs.
#   prosody-modules  community modules (mod_sasl2, mod_smacks, ...), installed
#                    into /usr/lib/prosody/modules.
#   clang lld rustc libstd-rust-dev-wasm32
#                    WebAssembly toolchains for the C and Rust plugins.
#   postgresql       Debian 12's PostgreSQL 15: internal/pgtest runs private
#                    clusters of it (initdb + postgres from
#                    /usr/lib/postgresql/15/bin, own data dir, free 127.0.0.1
#                    port) for engine/pgstore's tests. The system cluster
#                    the package creates is never started (policy-rc.d below)
#                    nor used.
#   ejabberd erlang-dev
#                    ejabberd 24.12 and the Erlang headers, both from
#                    bookworm-backports (bookworm's own ejabberd is 23.01):
#                    the ejabberd bridge (examples/ejabberd, `make
#                    ejabberd-bridge`, compiled with erlang-base's erlc) and
#                    internal/ejabberdtest, which runs private ejabberd
#                    nodes (own config, spool and log, no distribution,
#                    free 127.0.0.1 ports). The system service the package
#                    installs is never started (policy-rc.d below) and its
#                    boot links (sysvinit and systemd) are disabled.
#
# Prosody 13 comes from bookworm-backports (prosody 13.0.x and the 2025
# prosody-modules) and is NOT installed as a package: both .debs are
# unpacked (dpkg -x) into a private root, $PUSH2_PROSODY13_ROOT
# (/opt/push2/prosody13), whose prosody and prosodyctl are pointed at that
# root. So the two versions coexist: the system's /usr/bin/prosody stays
# 0.12, nothing of 13 is on PATH or in dpkg's database, and neither version
# can upgrade or remove the other. Prosody 13 needs the same Lua libraries
# as 0.12 (lua5.4, lua-expat, lua-filesystem, lua-sec, lua-socket,
# lua-bitop); whatever of its Depends line is not installed yet is installed
# with apt-get satisfy, from bookworm itself (backports are pinned at
# priority 100 and are only used for the download). The bookworm-backports
# suite is added to apt's sources, with the URI and key of the machine's
# existing Debian source, in
# /etc/apt/sources.list.d/push2-bookworm-backports.sources.
#
# ejabberd is installed as a package, from bookworm-backports
# (apt-get install -t bookworm-backports): nothing else on the machine uses
# Erlang, and the package's own layout (/usr/lib/x86_64-linux-gnu/ejabberd-*,
# /usr/lib/erlang/lib/xmpp-*) is what an operator has too.
#
# Idempotent: when everything is already installed it changes nothing and does
# not touch the network. It never leaves Debian's own prosody service running:
# the tests start private Prosody instances on free 127.0.0.1 ports with their
# own config and data directory, and a system instance is only in the way.
#
# Environment:
#   PUSH2_KEEP_SYSTEM_PROSODY=1  do not stop/disable an already running
#                                system prosody service.
#   PUSH2_PROSODY13_ROOT=DIR     where Prosody 13 is unpacked (default
#                                /opt/push2/prosody13; internal/prosodytest
#                                reads the same variable).
set -euo pipefail

# clang lld rustc libstd-rust-dev-wasm32: the WebAssembly toolchains of
# plugins/build.sh (C and Rust plugins). Installing them here, once, keeps
# parallel test binaries from racing for the dpkg lock.
PACKAGES=(prosody prosody-modules clang lld rustc libstd-rust-dev-wasm32 postgresql)

log() { printf 'install-deps: %s\n' "$*" >&2; }

is_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

PROSODY13_ROOT="${PUSH2_PROSODY13_ROOT:-/opt/push2/prosody13}"
# Written last by install_prosody13: its presence means the root is complete.
PROSODY13_MARKER="$PROSODY13_ROOT/.push2-unpacked"
BACKPORTS_SOURCE=/etc/apt/sources.list.d/push2-bookworm-backports.sources

missing=()
for p in "${PACKAGES[@]}"; do
	is_installed "$p" || missing+=("$p")
done
# ejabberd from bookworm-backports (24.x or later): bookworm's 23.01 lacks
# the hooks the bridge uses.
EJABBERD_PACKAGES=(ejabberd erlang-dev)
needejabberd=0
for p in "${EJABBERD_PACKAGES[@]}"; do
	is_installed "$p" || needejabberd=1
done
case "$(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null || true)" in
2[4-9].* | [3-9][0-9].*) ;;
*) needejabberd=1 ;;
esac
need13=0
[ -r "$PROSODY13_MARKER" ] && [ -x "$PROSODY13_ROOT/usr/bin/prosody" ] || need13=1

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	if [ ${#missing[@]} -eq 0 ] && [ "$need13" = 0 ] && [ "$needejabberd" = 0 ]; then
		log "all packages present (${PACKAGES[*]} ${EJABBERD_PACKAGES[*]}); prosody 13 in $PROSODY13_ROOT ($(head -n1 "$PROSODY13_MARKER"))"
		exit 0
	fi
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		log "missing packages: ${missing[*]:-none}, ejabberd from bookworm-backports: $([ "$needejabberd" = 0 ] && echo yes || echo no), prosody 13 unpacked: $([ "$need13" = 0 ] && echo yes || echo no); run this script as root"
		exit 1
	fi
fi

# stop_system_prosody stops a prosody started by Debian's packaging (systemd or
# sysvinit) and keeps it from starting at boot. Our test instances are
# separate processes and are never touched here.
stop_system_prosody() {
	if [ "${PUSH2_KEEP_SYSTEM_PROSODY:-0}" = "1" ]; then
		return 0
	fi
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		if systemctl is-active --quiet prosody.service 2>/dev/null; then
			log "stopping system prosody.service"
			"${SUDO[@]}" systemctl stop prosody.service || true
		fi
		if systemctl is-enabled --quiet prosody.service 2>/dev/null; then
			log "disabling system prosody.service"
			"${SUDO[@]}" systemctl disable prosody.service >/dev/null 2>&1 || true
		fi
		return 0
	fi
	# No systemd (containers): the sysvinit script's stop action matches the
	# process name "lua5.2" and misses Debian 12's lua5.4 prosody, so stop it by
	# the pid in its pidfile instead, after checking that pid really is prosody.
	local pidfile=/run/prosody/prosody.pid pid
	if [ -r "$pidfile" ]; then
		pid="$(tr -dc '0-9' <"$pidfile")"
		if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] &&
			tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'prosody'; then
			log "stopping system prosody (pid $pid)"
			"${SUDO[@]}" kill -TERM "$pid" || true
			for _ in $(seq 1 50); do
				[ -d "/proc/$pid" ] || break
				sleep 0.1
			done
			if [ -d "/proc/$pid" ]; then
				"${SUDO[@]}" kill -KILL "$pid" || true
			fi
		fi
	fi
	if command -v update-rc.d >/dev/null 2>&1 && [ -e /etc/init.d/prosody ]; then
		"${SUDO[@]}" update-rc.d prosody disable >/dev/null 2>&1 || true
	fi
}

# disable_system_ejabberd keeps Debian's ejabberd service from running: the
# package enables it at boot (sysvinit links S01ejabberd, the systemd
# multi-user.target.wants link) and would start it but for policy-rc.d.
# The tests start private nodes (internal/ejabberdtest); a system node would
# hold ports 5222/5269/5280 and an epmd. Only links that exist are touched,
# so a second run changes nothing.
disable_system_ejabberd() {
	[ -e /etc/init.d/ejabberd ] || [ -e /lib/systemd/system/ejabberd.service ] || return 0
	if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
		if systemctl is-active --quiet ejabberd.service 2>/dev/null; then
			log "stopping system ejabberd.service"
			"${SUDO[@]}" systemctl stop ejabberd.service || true
		fi
		if systemctl is-enabled --quiet ejabberd.service 2>/dev/null; then
			log "disabling system ejabberd.service"
			"${SUDO[@]}" systemctl disable ejabberd.service >/dev/null 2>&1 || true
		fi
	fi
	# Without a running systemd (containers): the same links, offline.
	if [ -e /etc/systemd/system/multi-user.target.wants/ejabberd.service ]; then
		log "disabling ejabberd.service at boot"
		if command -v deb-systemd-helper >/dev/null 2>&1; then
			"${SUDO[@]}" deb-systemd-helper disable ejabberd.service >/dev/null 2>&1 || true
		fi
		"${SUDO[@]}" rm -f /etc/systemd/system/multi-user.target.wants/ejabberd.service
	fi
	if ls /etc/rc[2-5].d/S[0-9][0-9]ejabberd >/dev/null 2>&1 && command -v update-rc.d >/dev/null 2>&1; then
		log "disabling the ejabberd init script at boot"
		"${SUDO[@]}" update-rc.d ejabberd disable >/dev/null 2>&1 || true
	fi
}

# debian_source prints "URI KEYRING" of the machine's Debian bookworm
# source (deb822 .sources files first, then one-line sources.list entries),
# or Debian's defaults when none is found.
debian_source() {
	local f uri="" key=""
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] && [ "$f" != "$BACKPORTS_SOURCE" ] || continue
		# The first stanza whose Suites has bookworm and whose URI is not
		# the security archive.
		read -r uri key < <(awk '
			function flush() { if (suites ~ /(^| )bookworm( |$)/ && uris !~ /security/ && uris != "") { print uris, key; found=1; exit } uris=""; suites=""; key="" }
			/^[ \t]*$/ { flush(); next }
			/^[ \t]*#/ { next }
			tolower($1) == "uris:" { uris=$2 }
			tolower($1) == "suites:" { $1=""; suites=$0 " " }
			tolower($1) == "signed-by:" { key=$2 }
			END { if (!found) flush() }
		' "$f") || true
		[ -n "$uri" ] && break
	done
	if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
		uri="$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { if ($(i+1) == "bookworm") { print $i; exit } break } }' /etc/apt/sources.list)"
		key="$(awk '$1 == "deb" && $0 !~ /security/ && match($0, /signed-by=[^] ]+/) { print substr($0, RSTART + 10, RLENGTH - 10); exit }' /etc/apt/sources.list)"
	fi
	printf '%s %s\n' "${uri:-http://deb.debian.org/debian}" "${key:-/usr/share/keyrings/debian-archive-keyring.gpg}"
}

# ensure_backports_source adds bookworm-backports to apt's sources unless
# some source already has it (outside a comment).
ensure_backports_source() {
	if grep -rqsE '^[^#]*[[:space:]]bookworm-backports([[:space:]]|$)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
		return 0
	fi
	local uri key
	read -r uri key < <(debian_source)
	log "adding bookworm-backports ($uri) to $BACKPORTS_SOURCE"
	printf '%s\n' \
		"# Added by push2's scripts/install-deps.sh: Prosody 13 is downloaded from" \
		"# bookworm-backports and unpacked into $PROSODY13_ROOT (not installed)." \
		"Types: deb" "URIs: $uri" "Suites: bookworm-backports" "Components: main" "Signed-By: $key" |
		"${SUDO[@]}" tee "$BACKPORTS_SOURCE" >/dev/null
}

# install_prosody13 downloads prosody and prosody-modules from
# bookworm-backports, installs what of prosody's Depends is missing, and
# unpacks both into a fresh directory that replaces $PROSODY13_ROOT at the
# end, so a half-done run never leaves a root that looks complete.
install_prosody13() {
	local tmp root deb mods version modversion f
	tmp="$("${SUDO[@]}" mktemp -d /tmp/push2-prosody13.XXXXXX)"
	# apt's download sandbox (user _apt) must be able to write there.
	"${SUDO[@]}" chmod 0755 "$tmp"
	"${SUDO[@]}" chown _apt "$tmp" 2>/dev/null || true
	(cd "$tmp" && "${SUDO[@]}" apt-get download -q prosody/bookworm-backports prosody-modules/bookworm-backports)
	deb="$(ls "$tmp"/prosody_*.deb)"
	mods="$(ls "$tmp"/prosody-modules_*.deb)"
	version="$(dpkg-deb -f "$deb" Version)"
	modversion="$(dpkg-deb -f "$mods" Version)"
	case "$version" in
	13.*) ;;
	*) log "error: bookworm-backports has prosody $version, expected 13.x"; exit 1 ;;
	esac
	log "prosody $version from bookworm-backports: installing its missing dependencies"
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get satisfy -y --no-install-recommends \
		"$(dpkg-deb -f "$deb" Depends)"
	root="$tmp/root"
	"${SUDO[@]}" dpkg -x "$deb" "$root"
	"${SUDO[@]}" dpkg -x "$mods" "$root"
	# Only the server itself: no init script, unit or logrotate entry that
	# could be mistaken for the system's.
	"${SUDO[@]}" rm -rf "$root/etc/init.d" "$root/lib/systemd" "$root/etc/logrotate.d"
	"${SUDO[@]}" rmdir "$root/lib" 2>/dev/null || true
	# The launchers carry Debian's paths (CFG_SOURCEDIR, ...), set when the
	# package was built: point them at the private root.
	for f in "$root/usr/bin/prosody" "$root/usr/bin/prosodyctl"; do
		"${SUDO[@]}" sed -i \
			-e "s|^CFG_SOURCEDIR=.*|CFG_SOURCEDIR='$PROSODY13_ROOT/usr/lib/prosody';|" \
			-e "s|^CFG_CONFIGDIR=.*|CFG_CONFIGDIR='$PROSODY13_ROOT/etc/prosody';|" \
			-e "s|^CFG_PLUGINDIR=.*|CFG_PLUGINDIR='$PROSODY13_ROOT/usr/lib/prosody/modules/';|" \
			-e "s|^CFG_DATADIR=.*|CFG_DATADIR='$PROSODY13_ROOT/var/lib/prosody';|" \
			"$f"
		grep -q "^CFG_SOURCEDIR='$PROSODY13_ROOT/" "$f" || { log "error: could not set the paths in $f"; exit 1; }
	done
	printf 'prosody %s, prosody-modules %s (bookworm-backports)\n' "$version" "$modversion" |
		"${SUDO[@]}" tee "$root/.push2-unpacked" >/dev/null
	"${SUDO[@]}" mkdir -p "$(dirname "$PROSODY13_ROOT")"
	"${SUDO[@]}" rm -rf "$PROSODY13_ROOT"
	"${SUDO[@]}" mv "$root" "$PROSODY13_ROOT"
	"${SUDO[@]}" rm -rf "$tmp"
	log "prosody $version unpacked into $PROSODY13_ROOT"
}

if [ ${#missing[@]} -eq 0 ] && [ "$need13" = 0 ] && [ "$needejabberd" = 0 ]; then
	log "all packages present (${PACKAGES[*]} ${EJABBERD_PACKAGES[*]}); prosody 13 in $PROSODY13_ROOT ($(head -n1 "$PROSODY13_MARKER"))"
	stop_system_prosody
	disable_system_ejabberd
	exit 0
fi

[ ${#missing[@]} -eq 0 ] || log "installing: ${missing[*]}"
[ "$needejabberd" = 0 ] || log "installing from bookworm-backports: ${EJABBERD_PACKAGES[*]}"
[ "$need13" = 0 ] || log "unpacking prosody 13 into $PROSODY13_ROOT"

# Keep the package's postinst from starting the system service: invoke-rc.d
# and deb-systemd-invoke consult /usr/sbin/policy-rc.d, and exit code 101
# means "action forbidden". Docker images usually ship such a file already;
# if not, put one in place for the duration of the install only.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
cleanup() {
	if [ "$created_policy" = "1" ]; then
		"${SUDO[@]}" rm -f "$POLICY"
	fi
}
trap cleanup EXIT
if [ ! -e "$POLICY" ]; then
	printf '#!/bin/sh\n# temporary, from push2 scripts/install-deps.sh\nexit 101\n' |
		"${SUDO[@]}" tee "$POLICY" >/dev/null
	"${SUDO[@]}" chmod 0755 "$POLICY"
	created_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
[ "$need13" = 0 ] && [ "$needejabberd" = 0 ] || ensure_backports_source
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
if [ ${#missing[@]} -gt 0 ]; then
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
[ "$need13" = 0 ] || install_prosody13
if [ "$needejabberd" = 1 ]; then
	"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		-t bookworm-backports "${EJABBERD_PACKAGES[@]}"
fi

stop_system_prosody
disable_system_ejabberd

for bin in prosody prosodyctl; do
	if ! command -v "$bin" >/dev/null 2>&1; then
		log "error: $bin not found after install"
		exit 1
	fi
	if [ ! -x "$PROSODY13_ROOT/usr/bin/$bin" ]; then
		log "error: $PROSODY13_ROOT/usr/bin/$bin not found after install"
		exit 1
	fi
done
for bin in erl erlc; do
	command -v "$bin" >/dev/null 2>&1 || { log "error: $bin not found after install"; exit 1; }
done
log "done: prosody $(dpkg-query -W -f='${Version}' prosody) (system), $(head -n1 "$PROSODY13_MARKER") in $PROSODY13_ROOT, ejabberd $(dpkg-query -W -f='${Version}' ejabberd)"
