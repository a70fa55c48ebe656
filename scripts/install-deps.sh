#!/usr/bin/env bash
# install-deps.sh — install the system packages that push2's end-to-end tests
# need on a Debian 12 (bookworm) machine, as root.
#
#   prosody          the real XMPP server the tests start (internal/prosodytest);
#                    pulls in lua5.4 and the Lua libraries it needs.
#   prosody-modules  community modules (mod_cloud_notify, ...), installed into
#                    /usr/lib/prosody/modules.
#   clang lld rustc libstd-rust-dev-wasm32
#                    WebAssembly toolchains for the C and Rust plugins.
#
# Idempotent: when everything is already installed it changes nothing and does
# not touch the network. It never leaves Debian's own prosody service running:
# the tests start private Prosody instances on free 127.0.0.1 ports with their
# own config and data directory, and a system instance is only in the way.
#
# Environment:
#   PUSH2_KEEP_SYSTEM_PROSODY=1  do not stop/disable an already running
#                                system prosody service.
set -euo pipefail

# clang lld rustc libstd-rust-dev-wasm32: the WebAssembly toolchains of
# plugins/build.sh (C and Rust plugins). Installing them here, once, keeps
# parallel test binaries from racing for the dpkg lock.
PACKAGES=(prosody prosody-modules clang lld rustc libstd-rust-dev-wasm32)

log() { printf 'install-deps: %s\n' "$*" >&2; }

is_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" = "installed" ]
}

missing=()
for p in "${PACKAGES[@]}"; do
	is_installed "$p" || missing+=("$p")
done

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	if [ ${#missing[@]} -eq 0 ]; then
		log "all packages present (${PACKAGES[*]})"
		exit 0
	fi
	if command -v sudo >/dev/null 2>&1; then
		SUDO=(sudo)
	else
		log "missing packages: ${missing[*]}; run this script as root"
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

if [ ${#missing[@]} -eq 0 ]; then
	log "all packages present (${PACKAGES[*]})"
	stop_system_prosody
	exit 0
fi

log "installing: ${missing[*]}"

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
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"

stop_system_prosody

for bin in prosody prosodyctl; do
	if ! command -v "$bin" >/dev/null 2>&1; then
		log "error: $bin not found after install"
		exit 1
	fi
done
log "done: prosody $(dpkg-query -W -f='${Version}' prosody)"
