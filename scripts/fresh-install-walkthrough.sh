#!/bin/sh
# The README's "Running it for real" steps, word for word, on a fresh
# Debian 12 (a debootstrap chroot), for the domain "localhost": from
# nothing to `push2 probe` printing "ok: the push went through".
#
#   sudo scripts/fresh-install-walkthrough.sh [CHROOT_DIR]
#
# To remove CHROOT_DIR afterwards, check first that nothing is mounted
# under it (grep CHROOT_DIR /proc/mounts): the host's /dev is bind-mounted
# there while the script runs.
#
# Not part of `make test` (it downloads a Debian base system, Prosody 13,
# Go 1.23 and, through the Go module proxy, the Go release go.mod names:
# some minutes and a few hundred MB). What differs from a real server is
# marked "chroot:" below: there is no systemd running in a chroot, so the
# services are started the way their units would start them; every
# listener is kept on 127.0.0.1; the host's resolver and CA certificates
# are copied in.
set -eu
root=${1:-/srv/push2-fresh}
repo=$(cd "$(dirname "$0")/.." && pwd)

[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 2; }
command -v debootstrap >/dev/null || apt-get install -y debootstrap
[ -x "$root/bin/bash" ] || debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian

# chroot: what a real machine has already.
cp /etc/resolv.conf "$root/etc/resolv.conf"
mkdir -p "$root/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/" 2>/dev/null || true
printf '#!/bin/sh\nexit 101\n' > "$root/usr/sbin/policy-rc.d" # no service starts while installing
chmod +x "$root/usr/sbin/policy-rc.d"
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
mountpoint -q "$root/dev" || mount --bind /dev "$root/dev"
cleanup() {
	chroot "$root" sh -c 'prosodyctl stop --force; kill $(cat /tmp/push2d.pid 2>/dev/null) 2>/dev/null' || true
	# Lazily: a daemon that is still exiting may hold them. Afterwards
	# nothing of the host may stay mounted under $root (removing $root
	# would then remove the host's /dev).
	umount -l "$root/dev" 2>/dev/null || true
	umount -l "$root/proc" 2>/dev/null || true
	if grep -q " $root/" /proc/mounts; then
		echo "WARNING: still mounted under $root; unmount before removing it:" >&2
		grep " $root/" /proc/mounts >&2
	fi
}
trap cleanup EXIT
rm -rf "$root/root/push2"
git clone -q "$repo" "$root/root/push2"

chroot "$root" /bin/bash -eux <<'STEPS'
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd curl ca-certificates # chroot: a server has these
update-ca-certificates
cd /root/push2

# README, the install block.
echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/backports.list
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q -t bookworm-backports prosody prosody-modules golang-1.23-go
DEBIAN_FRONTEND=noninteractive apt-get install -y -q make git ca-certificates
export PATH=/usr/lib/go-1.23/bin:$PATH
make install
systemd-sysusers
for f in component.secret admin.token; do
    install -m 600 -o push2 -g push2 /dev/null /etc/push2/$f
    head -c32 /dev/urandom | base64 > /etc/push2/$f
done

# Step 1: push2d.
sed -i 's/^jid = "push2.example.org"/jid = "push2.localhost"/; s/^domains = \["example.org"\]/domains = ["localhost"]/' /etc/push2/push2d.toml

# Step 2: Prosody, as examples/prosody/prosody.cfg.lua.snippet says.
cfg=/etc/prosody/prosody.cfg.lua
sed -i 's|^plugin_paths = .*|plugin_paths = { "/usr/local/lib/prosody/modules", "/usr/lib/prosody/modules" }\ncomponent_ports = { 5347 }\ncomponent_interfaces = { "127.0.0.1" }\ninterfaces = { "127.0.0.1" } -- chroot: loopback only|' $cfg
sed -i 's|^\t\t"cloud_notify";|\t\t-- "cloud_notify"; removed for push2|' $cfg
sed -i 's|^VirtualHost "localhost"$|VirtualHost "localhost"\n    modules_enabled = { "offline"; "mam"; "smacks"; "carbons"; "sasl2"; "sasl2_bind2"; "sasl2_sm"; "push2_bridge" }\n    push2_component = "push2.localhost"|' $cfg
printf '\nComponent "push2.localhost"\n    component_secret = "%s"\n' "$(cat /etc/push2/component.secret)" >> $cfg
# The domain's certificate (a real server has its own: prosodyctl cert import).
prosodyctl cert generate localhost </dev/null >/dev/null
prosodyctl --root cert import /var/lib/prosody
prosodyctl check config
mkdir -p /run/prosody && chown prosody:prosody /run/prosody
prosodyctl start --force # chroot: instead of systemctl reload prosody
sleep 3
grep 'push2 bridge loaded' /var/log/prosody/prosody.log

# Step 3: check both sides.
runuser -u push2 -- push2d check --connect

# Step 4: start (chroot: what the unit does: StateDirectory, User, ExecStart).
install -d -m 700 -o push2 -g push2 /var/lib/push2
runuser -u push2 -- setsid push2d --config /etc/push2/push2d.toml > /tmp/push2d.log 2>&1 < /dev/null &
echo $! > /tmp/push2d.pid
sleep 3
curl -sf http://127.0.0.1:5380/healthz

# Step 5: see a push.
set +x # the passwords stay out of the trace
umask 077
for a in device service; do
    head -c12 /dev/urandom | base64 > /root/$a.pw
    prosodyctl register probe-$a localhost "$(cat /root/$a.pw)"
done
set -x
push2 probe -server 127.0.0.1:5222 -insecure-skip-verify \
    -device probe-device@localhost -device-password-file /root/device.pw \
    -service probe-service@localhost -service-password-file /root/service.pw
STEPS
