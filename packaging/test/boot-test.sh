#!/bin/bash
# usage: boot-test.sh ARCH   (amd64, arm64 or armhf; root)
#
# Installs, exercises, upgrades, removes and purges the outpost package of
# ARCH (dist/outpost_<version>-1_<arch>.deb, from `make deb`) inside a
# minimal Debian bookworm booted with systemd as PID 1 (systemd-nspawn -x: a
# throw-away copy of the cached root from rootfs.sh). Foreign arches run
# under qemu-user through binfmt_misc (make binfmt).
#
# Prints one line per assertion and a summary; exits 1 if any failed.
# Bounded in time; the container is always powered off (or killed) on exit.
set -euo pipefail
ARCH=${1:?usage: boot-test.sh amd64|arm64|armhf}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
# The package `make deb` built (it empties dist/ first, so there is one).
DEB=$(ls "$REPO"/dist/outpost_*-1_"$ARCH".deb 2>/dev/null | head -1)
[ -n "$DEB" ] || { echo "boot-test: no dist/outpost_*_$ARCH.deb: run make deb" >&2; exit 1; }
VERSION=$(dpkg-deb -f "$DEB" Version)
VERSION=${VERSION%-1}
BUILDER=$REPO/bin/outpost-packaging
NAME=outpost-test-$ARCH-$$
[ -x "$BUILDER" ] || { echo "boot-test: $BUILDER missing: run make deb" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "boot-test: needs root (debootstrap, systemd-nspawn)" >&2; exit 1; }

T0=$(date +%s)
ROOTFS=$("$HERE/rootfs.sh" "$ARCH")
WORK=$(mktemp -d)
LOG=$WORK/nspawn.log
PASS=0 FAILED=0 SKIPPED=0
ok() { echo "  ok    $*"; PASS=$((PASS + 1)); }
fail() { echo "  FAIL  $*"; FAILED=$((FAILED + 1)); }
skip() { echo "  FAIL  $* (not run: the packaged binary has no 'outpost daemon')"; SKIPPED=$((SKIPPED + 1)); FAILED=$((FAILED + 1)); }
check() { # check NAME COMMAND...: pass when the command succeeds
	local name=$1; shift
	if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi
}
eq() { # eq NAME GOT WANT
	if [ "$2" = "$3" ]; then ok "$1"; else fail "$1: got '$2', want '$3'"; fi
}

# The upgrade target: the same binaries as a newer package version.
NEWVERSION=$VERSION+test1
mkdir -p "$WORK/dist"
cp "$DEB" "$WORK/dist/old.deb"
"$BUILDER" -root "$REPO" -out "$WORK/new" -version "$NEWVERSION" -arch "$ARCH" >/dev/null
mv "$WORK/new"/outpost_*.deb "$WORK/dist/new.deb"
# The receiver's package, where the architecture has one.
RDEB=$(ls "$REPO"/dist/outpost-receiver_*-1_"$ARCH".deb 2>/dev/null | head -1 || true)
[ -z "$RDEB" ] || cp "$RDEB" "$WORK/dist/receiver.deb"

setsid systemd-nspawn -q -x -D "$ROOTFS" -b --register=no --keep-unit --console=passive \
	--machine="$NAME" --bind-ro="$WORK/dist:/dist" >"$LOG" 2>&1 &
NSPAWN=$!
L=
cleanup() {
	set +e
	if kill -0 $NSPAWN 2>/dev/null; then
		if [ -n "$L" ]; then
			timeout 10 nsenter -t "$L" -a systemctl poweroff >/dev/null 2>&1 || kill -TERM $NSPAWN
		else
			kill -TERM $NSPAWN
		fi
		for _ in $(seq 300); do kill -0 $NSPAWN 2>/dev/null || break; sleep 0.1; done
		# Killing the container's PID 1 kills its whole PID namespace.
		kill -0 $NSPAWN 2>/dev/null && [ -n "$L" ] && kill -KILL "$L" 2>/dev/null
		for _ in $(seq 50); do kill -0 $NSPAWN 2>/dev/null || break; sleep 0.1; done
		kill -KILL $NSPAWN 2>/dev/null
	fi
	wait $NSPAWN 2>/dev/null
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM INT

# The container's PID 1: the nspawn child in another PID namespace (the
# first child is a short-lived outer child in ours).
MYNS=$(readlink /proc/self/ns/pid)
for _ in $(seq 600); do
	for c in $(pgrep -P $NSPAWN || true); do
		ns=$(readlink /proc/$c/ns/pid 2>/dev/null || true)
		[ -n "$ns" ] && [ "$ns" != "$MYNS" ] && L=$c
	done
	[ -n "$L" ] && break
	sleep 0.1
done
[ -n "$L" ] || { cat "$LOG"; echo "boot-test: FAIL: container did not start" >&2; exit 1; }
X() { timeout 120 nsenter -t "$L" -a "$@"; }
# Never "J | grep -q" under pipefail (grep exits early, journalctl gets SIGPIPE).
J() { X journalctl -b -u outpost --no-pager -q "$@"; }
cursor() { X journalctl -b -n 0 --show-cursor -q | sed -n 's/^-- cursor: //p'; }
prop() { X systemctl show -p "$1" --value outpost; }
signal() { # signal SIG: send SIG to the service's main process (never to pid 0)
	local p
	p=$(prop MainPID)
	[ "$p" -gt 0 ] && X kill -"$1" "$p"
}
wait_for() { # wait_for SECONDS COMMAND...: poll until the command succeeds
	local n=$(($1 * 5)); shift
	for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
	return 1
}
for _ in $(seq 600); do X test -S /run/dbus/system_bus_socket 2>/dev/null && break; sleep 0.1; done
state=$(X systemctl is-system-running --wait 2>/dev/null || true)
echo "boot-test $ARCH: booted ($state) in $(($(date +%s) - T0)) s; package $VERSION"
if [ "$state" != running ]; then
	# Under qemu-user a few early units fail ("Failed to set up credentials").
	X systemctl --failed --no-pager --plain --no-legend | sed 's/^/  (failed unit) /'
fi

# Hardware groups as an image may have them: postinst adds the user to those
# that exist, and the service must start when one (spi here) is missing.
HW_GROUPS=${HW_GROUPS:-i2c gpio}
for g in $HW_GROUPS; do X groupadd --system "$g"; done

echo "install"
X env DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold /dist/old.deb >"$WORK/dpkg.log" 2>&1 ||
	{ cat "$WORK/dpkg.log"; fail "dpkg -i"; }
eq "package installed" "$(X dpkg-query -W -f='${Status} ${Version}' outpost)" "install ok installed $VERSION-1"
eq "/usr/bin/outpost" "$(X stat -c '%a %U:%G' /usr/bin/outpost)" "755 root:root"
eq "unit file" "$(X stat -c '%a %U:%G' /usr/lib/systemd/system/outpost.service)" "644 root:root"
eq "config file" "$(X stat -c '%a %U:%G' /etc/outpost/outpost.yaml)" "640 root:outpost"
eq "state dir" "$(X stat -c '%a %U:%G' /var/lib/outpost)" "750 outpost:outpost"
check "copyright, changelog, man page" X test -s /usr/share/doc/outpost/copyright -a \
	-s /usr/share/doc/outpost/changelog.Debian.gz -a -s /usr/share/man/man8/outpost.8.gz
check "conffile registered" X sh -c "dpkg-query -W -f='\${Conffiles}' outpost | grep -q '^ /etc/outpost/outpost.yaml '"
uid=$(X id -u outpost || echo none)
if [ "$uid" != none ] && [ "$uid" -lt 1000 ]; then ok "system user outpost (uid $uid)"; else fail "system user outpost: uid $uid"; fi
eq "user's groups" "$(X id -nG outpost)" "outpost $HW_GROUPS"
eq "user's home and shell" "$(X getent passwd outpost | cut -d: -f6,7)" "/var/lib/outpost:/usr/sbin/nologin"
eq "unit enabled" "$(X systemctl is-enabled outpost || true)" enabled
v=$(X systemd-analyze verify --man=no outpost.service 2>&1 || true)
eq "systemd-analyze verify" "$v" ""
got=$(X outpost version || true)
case "$got" in "outpost $VERSION "*) ok "outpost version" ;; *) fail "outpost version: $got" ;; esac

HAVE_DAEMON=
X outpost help 2>/dev/null | grep -q '^ *daemon\b' && HAVE_DAEMON=1

# Short watchdog and restart delays for the test, as an administrator would
# set them with `systemctl edit outpost`; the unit itself is unchanged.
X mkdir -p /etc/systemd/system/outpost.service.d
X sh -c 'printf "[Service]\nWatchdogSec=4s\nRestartSec=1s\nTimeoutAbortSec=5s\n" >/etc/systemd/system/outpost.service.d/test.conf'
if [ "$(dpkg --print-architecture)" != "$ARCH" ]; then
	# qemu-user cannot create the user namespace PrivateUsers= asks for
	# ("Failed to set up user namespacing: Invalid argument", 217/USER);
	# real ARM hardware can. Only the emulated run relaxes it.
	X sh -c 'printf "PrivateUsers=no\n" >>/etc/systemd/system/outpost.service.d/test.conf'
	echo "  (qemu-user: PrivateUsers=no for this run)"
fi
X systemctl daemon-reload

if [ -n "$HAVE_DAEMON" ]; then
	echo "service"
	X systemctl restart outpost || true
	eq "is-active after install (READY=1 reached)" "$(X systemctl is-active outpost || true)" active
	eq "Type=notify" "$(prop Type)" notify
	eq "runs as outpost" "$(X ps -o user= -p "$(prop MainPID)" 2>/dev/null || X stat -c %U /proc/"$(prop MainPID)")" outpost
	# The default config has no uplink URL and no sensors: the daemon says so
	# at warning priority; its other lines are info.
	check "journal: a warning at priority 4" X sh -c "journalctl -b -u outpost -p warning..warning -o cat -q _UID=$uid | grep -q ."
	check "journal: info lines at priority 6" X sh -c "journalctl -b -u outpost -p info..info -o cat -q _UID=$uid | grep -q ."

	echo "reload"
	pid=$(prop MainPID)
	c=$(cursor)
	X sh -c 'cat >>/etc/outpost/outpost.yaml <<EOF
# added by the boot test
EOF
sed -i "s/^sensors: \[\]/sensors:\n  - {name: demo, driver: sim, interval: 100ms, series: 2, seed: 1}/" /etc/outpost/outpost.yaml'
	check "reload" X systemctl reload outpost
	eq "reload keeps the process" "$(prop MainPID)" "$pid"
	eq "active after reload" "$(X systemctl is-active outpost || true)" active
	check "journal: the reload is logged" X sh -c "journalctl -b -u outpost -o cat -q --after-cursor='$c' _UID=$uid | grep -qi reload"
	check "spool written by the reloaded sim sensor" wait_for 20 X test -s /var/lib/outpost/spool.db

	echo "watchdog (SIGSTOP)"
	n=$(prop NRestarts)
	c=$(cursor)
	signal STOP || fail "no main process to stop"
	check "hung daemon restarted" wait_for 30 sh -c "[ \"\$(nsenter -t $L -a systemctl show -p NRestarts --value outpost)\" -gt $n ]"
	check "journal: watchdog timeout" X sh -c "journalctl -b -u outpost -o cat -q --after-cursor='$c' | grep -q 'Watchdog timeout'"
	check "active again after watchdog" wait_for 30 sh -c "[ \"\$(nsenter -t $L -a systemctl is-active outpost)\" = active ]"

	echo "SIGKILL"
	n=$(prop NRestarts)
	signal KILL || fail "no main process to kill"
	check "killed daemon restarted" wait_for 30 sh -c "[ \"\$(nsenter -t $L -a systemctl show -p NRestarts --value outpost)\" -gt $n ]"
	check "active again after SIGKILL" wait_for 30 sh -c "[ \"\$(nsenter -t $L -a systemctl is-active outpost)\" = active ]"

	echo "stop"
	c=$(cursor)
	X systemctl stop outpost || true
	eq "stop: result" "$(prop Result)" success
	eq "stop: exit status" "$(prop ExecMainCode)/$(prop ExecMainStatus)" "1/0"
	if X sh -c "journalctl -b -u outpost -o cat -q --after-cursor='$c' | grep -q 'SIGKILL\|timed out'"; then
		fail "stop: systemd had to SIGKILL"
	else
		ok "stop: no SIGKILL needed"
	fi
	X systemctl start outpost || true
	wait_for 20 X test -s /var/lib/outpost/spool.db || true
else
	for a in "is-active after install (READY=1 reached)" "Type=notify" "runs as outpost" \
		"journal priorities" "reload" "watchdog restart after SIGSTOP" "restart after SIGKILL" \
		"stop is a clean SIGTERM"; do
		skip "$a"
	done
	# Without a daemon the service fails and restarts; keep it quiet.
	X systemctl stop outpost || true
	X sh -c 'echo "# changed by the boot test" >>/etc/outpost/outpost.yaml'
fi

echo "upgrade to $NEWVERSION"
conf=$(X md5sum /etc/outpost/outpost.yaml)
spool=$(X stat -c %s /var/lib/outpost/spool.db 2>/dev/null || echo none)
pid=$(prop MainPID)
readings() { X outpost spool stats --json 2>/dev/null | grep -o '"readings": *[0-9]*' | head -1 | grep -o '[0-9]*$'; }
before=$(readings || true)
X env DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold /dist/new.deb >"$WORK/dpkg.log" 2>&1 ||
	{ cat "$WORK/dpkg.log"; fail "dpkg -i (upgrade)"; }
eq "upgraded" "$(X dpkg-query -W -f='${Version}' outpost)" "$NEWVERSION-1"
eq "modified config kept" "$(X md5sum /etc/outpost/outpost.yaml)" "$conf"
eq "config mode after upgrade" "$(X stat -c '%a %U:%G' /etc/outpost/outpost.yaml)" "640 root:outpost"
if [ -n "$HAVE_DAEMON" ]; then
	if [ "$spool" != none ] && X test -s /var/lib/outpost/spool.db &&
		[ "$(X stat -c %s /var/lib/outpost/spool.db)" -ge "$spool" ]; then
		ok "spool kept ($spool bytes before)"
	else
		fail "spool kept: $spool bytes before, $(X stat -c %s /var/lib/outpost/spool.db 2>&1) after"
	fi
	newpid=$(prop MainPID)
	if [ "$newpid" != 0 ] && [ "$newpid" != "$pid" ]; then ok "service restarted by the upgrade"; else fail "service restarted by the upgrade: pid $pid -> $newpid"; fi
	check "active on the kept spool" wait_for 30 sh -c "[ \"\$(nsenter -t $L -a systemctl is-active outpost)\" = active ]"
	after=$(readings || true)
	if [ -n "$before" ] && [ "$before" -gt 0 ] && [ -n "$after" ] && [ "$after" -ge "$before" ]; then
		ok "readings kept across the upgrade ($before before, $after after)"
	else
		fail "readings kept across the upgrade: '$before' before, '$after' after (outpost spool stats --json)"
	fi
else
	skip "spool and readings kept; service restarted and active on it"
	X systemctl stop outpost || true
fi

echo "remove"
X env DEBIAN_FRONTEND=noninteractive dpkg -r outpost >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg -r"; }
check "binary removed" X test ! -e /usr/bin/outpost
eq "service stopped" "$(X systemctl is-active outpost || true)" inactive
check "config kept on remove" X test -f /etc/outpost/outpost.yaml
check "state kept on remove" X test -d /var/lib/outpost
if [ -n "$HAVE_DAEMON" ]; then check "spool kept on remove" X test -s /var/lib/outpost/spool.db; fi

echo "purge"
X env DEBIAN_FRONTEND=noninteractive dpkg --purge outpost >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg --purge"; }
check "state removed on purge" X test ! -e /var/lib/outpost
check "config removed on purge" X test ! -e /etc/outpost
eq "package gone" "$(X dpkg-query -W -f='${Status}' outpost 2>/dev/null || echo gone)" gone
check "unit not left masked" X test ! -L /etc/systemd/system/outpost.service

if [ -n "$RDEB" ]; then
	echo "outpost-receiver"
	if [ "$(dpkg --print-architecture)" != "$ARCH" ]; then # as for outpost above
		X mkdir -p /etc/systemd/system/outpost-receiver.service.d
		X sh -c 'printf "[Service]\nPrivateUsers=no\n" >/etc/systemd/system/outpost-receiver.service.d/test.conf'
	fi
	X env DEBIAN_FRONTEND=noninteractive dpkg -i /dist/receiver.deb >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg -i outpost-receiver"; }
	wait_for 30 X systemctl is-active --quiet outpost-receiver && ok "receiver active" || fail "receiver active"
	eq "receiver user" "$(X stat -c '%a %U:%G' /var/lib/outpost-receiver)" "750 outpost-receiver:outpost-receiver"
	eq "receiver environment file" "$(X stat -c '%a %U:%G' /etc/default/outpost-receiver)" "640 root:outpost-receiver"
	# Active is not listening yet (under qemu the migrations take seconds): wait for both.
	check "receiver's SQLite in its state dir" wait_for 30 X test -s /var/lib/outpost-receiver/receiver.db
	check "receiver answers /healthz" wait_for 30 X bash -c 'exec 3<>/dev/tcp/127.0.0.1/8080 && printf "GET /healthz HTTP/1.0\r\n\r\n" >&3 && grep -q "^ok" <&3'
	tok=$(X runuser -u outpost-receiver -- outpost-receiver device add pi-07 --database-url sqlite:/var/lib/outpost-receiver/receiver.db 2>/dev/null || true)
	check "device add prints a token" test -n "$tok"
	X env DEBIAN_FRONTEND=noninteractive dpkg --purge outpost-receiver >"$WORK/dpkg.log" 2>&1 || { cat "$WORK/dpkg.log"; fail "dpkg --purge outpost-receiver"; }
	check "receiver state removed on purge" X test ! -e /var/lib/outpost-receiver
fi

if [ "$FAILED" != 0 ]; then
	echo "--- journal of this boot (outpost and systemd's lines about it)"
	X journalctl -b --no-pager -q -o short-monotonic -u outpost | tail -60 || true
fi
cleanup
trap - EXIT
echo "boot-test $ARCH: $PASS passed, $FAILED failed, $SKIPPED not run, $(($(date +%s) - T0)) s"
[ "$FAILED" = 0 ]
