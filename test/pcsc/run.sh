#!/usr/bin/env bash
# PC/SC end-to-end test of the se-simulator (issue 3, acceptance 6): a
# simulated card in vsmartcard's virtual reader, reached by standard PC/SC
# tools through pcscd.
#
#   1. installs the Debian packages if missing (apt-get update once, then
#      apt-get install), needs root (CI runs as root, without systemd);
#   2. starts pcscd in the foreground, in the background (unless a pcscd is
#      already running: then it is used and left alone);
#   3. starts services/sesimulator/cmd/sesim-pcsc: an embedded NATS server,
#      the se-simulator and the demo card 0100000000000002 (uicc), served
#      through vpcd at 127.0.0.1:35963 = reader "Virtual PCD 00 00";
#   4. opensc-tool -r 'Virtual PCD 00 00' -s 00A4040000 must print the ISD
#      FCI (6F ... with SW 9000);
#   5. scp03_get_status.py (pyscard) opens SCP03 with the ISD keys derived
#      from the demo issuer master key, runs secured GET STATUS with verified
#      R-MACs, and checks the fleet committed every APDU;
#   6. stops what it started. Exit code 0 = all passed.
#
# Network: the NATS server and the se-simulator's HTTP API listen on
# 127.0.0.1 only, and the card connects to vpcd on 127.0.0.1. vpcd itself
# (Debian's /etc/reader.conf.d/vpcd, DEVICENAME /dev/null:0x8C7B) listens on
# all interfaces, ports 35963-35964, while pcscd runs: vpcd.c binds
# INADDR_ANY and has no option for an address.
#
# Environment: GO (default go), PCSC_TIMEOUT (seconds per wait, default 60).
set -euo pipefail
cd "$(dirname "$0")/../.."

GO=${GO:-go}
WAIT=${PCSC_TIMEOUT:-60}
READER="Virtual PCD 00 00"
VPCD_ADDR=127.0.0.1:35963
SE=0100000000000002
PACKAGES=(vsmartcard-vpcd pcscd pcsc-tools opensc python3-pyscard python3-cryptography)
# Debian's interpreter: python3-pyscard is installed for it, not for a
# python3 that a version manager may put first in PATH.
PY=/usr/bin/python3

say() { echo "== pcsc-test: $*"; }
fail() {
	echo "FAIL pcsc-test: $*" >&2
	exit 1
}

if [ "$(id -u)" != 0 ]; then
	fail "run as root: the test installs Debian packages and starts pcscd (CI runs as root)"
fi

# 1. Packages.
missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	command -v apt-get >/dev/null || fail "missing ${missing[*]} and no apt-get (the test needs Debian 12 or similar)"
	say "installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
grep -qs 'FRIENDLYNAME *"Virtual PCD"' /etc/reader.conf.d/vpcd ||
	fail "/etc/reader.conf.d/vpcd (package vsmartcard-vpcd) does not declare the reader \"Virtual PCD\""

work=$(mktemp -d -t tsmhub-pcsc-XXXXXX)
pcscd_pid=""
stack_pid=""
ok=0

# stop PID NAME: SIGTERM, then SIGKILL after 20s.
stop() {
	local pid=$1 name=$2
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 200); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		echo "pcsc-test: $name did not stop on SIGTERM, killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	set +e
	stop "$stack_pid" sesim-pcsc
	stop "$pcscd_pid" pcscd
	if [ "$ok" != 1 ]; then
		for f in stack.log pcscd.log; do
			[ -s "$work/$f" ] && { echo "--- last lines of $f" >&2; tail -n 40 "$work/$f" >&2; }
		done
	fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT HUP

# until SECONDS WHAT CMD...: retries CMD every 0.2s until it succeeds.
until_ok() {
	local limit=$1 what=$2
	shift 2
	local end=$((SECONDS + limit))
	until "$@"; do
		[ $SECONDS -lt $end ] || fail "timed out after ${limit}s waiting for $what"
		sleep 0.2 # polling interval
	done
}

# 2. pcscd.
if pidof pcscd >/dev/null; then
	say "pcscd already running (pid $(pidof pcscd)): using it"
else
	say "starting pcscd --foreground"
	pcscd --foreground --info >"$work/pcscd.log" 2>&1 &
	pcscd_pid=$!
fi
# The reader list is read whole before grep: with pipefail, grep -q closing
# the pipe early would fail the pipeline.
readers() { timeout --foreground 10 opensc-tool -l 2>/dev/null || true; }
reader_listed() { grep -q "$READER" <<<"$(readers)"; }
until_ok "$WAIT" "pcscd to list the reader \"$READER\" (restart pcscd if it started before vsmartcard-vpcd was installed)" reader_listed

# 3. The se-simulator with the demo card in the virtual reader.
say "building and starting sesim-pcsc"
(cd services/sesimulator && "$GO" build -o "$work/sesim-pcsc" ./cmd/sesim-pcsc)
"$work/sesim-pcsc" -vpcd "$VPCD_ADDR" -se "$SE" -data "$work/data" >"$work/stack.out" 2>"$work/stack.log" &
stack_pid=$!
stack_ready() {
	kill -0 "$stack_pid" 2>/dev/null || fail "sesim-pcsc exited"
	grep -q '^ready ' "$work/stack.out"
}
until_ok "$WAIT" "the se-simulator and its demo card" stack_ready
http=$(sed -n 's/^ready http=\([^ ]*\) .*/\1/p' "$work/stack.out")
card_present() { grep -Eq "Yes .*$READER" <<<"$(readers)"; }
until_ok "$WAIT" "the card in \"$READER\"" card_present
say "card $SE is in \"$READER\" (se-simulator HTTP $http)"

# 4. opensc-tool: SELECT with an empty AID returns the ISD's FCI.
say "opensc-tool -r '$READER' -s 00A4040000"
out=$(timeout --foreground "$WAIT" opensc-tool -r "$READER" -s 00A4040000 2>&1) || {
	echo "$out"
	fail "opensc-tool failed"
}
echo "$out"
grep -q 'Received (SW1=0x90, SW2=0x00)' <<<"$out" || fail "opensc-tool: SW is not 9000"
first=$(awk '/^Received/ { getline; print $1; exit }' <<<"$out")
[ "$first" = 6F ] || fail "opensc-tool: the response does not start with the FCI tag 6F (got '$first')"
grep -q 'A0 00 00 01 51 00 00 00' <<<"$out" || fail "opensc-tool: the FCI does not name the ISD A000000151000000"

# 5. pyscard: SCP03 and secured GET STATUS.
say "pyscard: SCP03 with the ISD, secured GET STATUS"
timeout --foreground "$WAIT" "$PY" test/pcsc/scp03_get_status.py --reader "$READER" --card-url "$http/v1/cards/$SE" ||
	fail "pyscard SCP03 session"

ok=1
say "PASS"
