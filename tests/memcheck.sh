#!/bin/bash
# SPDX-License-Identifier: MIT
# make memcheck: ./ncloudfs under valgrind memcheck against the NCP emulator (200 images):
# a full walk, injected faults between reads of uncached images, reads served stale
# during an outage, a walk after the TTL, then unmount. Passes when valgrind finds no
# error and no definite leak and the daemon exits 0; else shows valgrind's records.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=/usr/bin/python3
AK=NCPTESTACCESSKEY0001
SK=ncp-test-secret-key-0123456789abcdef
W=$(mktemp -d /tmp/ncloudfs-memcheck.XXXXXX)
MNT=$W/mnt
VGLOG=$W/valgrind.log
WALK_TIMEOUT=300
EMU_PID= VG_PID=
unset $(compgen -e | grep '^NCLOUD_')

mounted() { awk -v m="$MNT" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

cleanup() {
	local rc=$?
	mounted && { fusermount3 -u "$MNT" 2>/dev/null || fusermount3 -uz "$MNT"; }
	[ -n "$VG_PID" ] && kill "$VG_PID" 2>/dev/null
	[ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null
	wait
	if [ "$rc" -eq 0 ]; then rm -rf "$W"; else echo "memcheck: logs kept in $W" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "memcheck: $*" >&2
	tail -n 20 "$W/ncloudfs.log" >&2 2>/dev/null
	exit 1
}

# ctl PATH [JSON]: call the emulator's control API (POST with JSON, else GET); print the answer.
ctl() {
	"$PY" -c 'import ssl, sys, urllib.request as u
body = sys.argv[3].encode() if len(sys.argv) > 3 else None
print(u.urlopen(u.Request(sys.argv[1], body), timeout=10,
                context=ssl.create_default_context(cafile=sys.argv[2])).read().decode())' \
		"$URL/_emu/$1" "$W/cert.pem" "${@:2}" || fail "control call $* failed"
}

# fault KIND COUNT ACTION: the next COUNT calls of ACTION (* any; -1: until cleared) fail as KIND.
fault() {
	ctl fault "{\"kind\": \"$1\", \"count\": $2, \"action\": \"$3\", \"retry_after\": 1}" \
		>/dev/null
}

# wait_for SECONDS CMD...: poll CMD until it succeeds or SECONDS pass.
wait_for() {
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -ge "$end" ] && return 1
		sleep 0.1
	done
}

valgrind_runs() { kill -0 "$VG_PID" 2>/dev/null; }
mounted_or_gone() { mounted || ! valgrind_runs; }

# read_tree PATH... [FIND-OPTION...]: read every file under PATHs; errors are expected,
# a hang is not.
read_tree() {
	timeout --foreground "$WALK_TIMEOUT" find "$@" -type f -exec cat {} + >/dev/null 2>&1
	[ $? -ne 124 ] || fail "reading $* took over $WALK_TIMEOUT s"
}

# after_ttl KIND COUNT ACTION PATH...: let the cache expire, inject faults, read PATHs.
after_ttl() {
	sleep 1.1
	fault "$1" "$2" "$3"
	shift 3
	read_tree "$@"
}

# The emulator and the daemon run in their own sessions: Ctrl-C reaches only this
# script and its walks, and cleanup stops the rest in order.
"$PY" -c 'import sys; sys.path.insert(0, "tests/e2e"); import emu; emu.make_cert(sys.argv[1])' "$W"
setsid "$PY" tests/emulator/ncp_emulator.py --port 0 --port-file "$W/port" --access-key "$AK" \
	--secret-key "$SK" --images 199 --cert "$W/cert.pem" --key "$W/key.pem" \
	2>"$W/emulator.log" &
EMU_PID=$!
wait_for 10 test -s "$W/port" || fail "the emulator did not start: $(cat "$W/emulator.log")"
URL=https://127.0.0.1:$(cat "$W/port")

mkdir -p "$MNT" "$W/home"
HOME=$W/home NCLOUD_ACCESS_KEY_ID=$AK NCLOUD_SECRET_ACCESS_KEY=$SK \
	setsid valgrind --tool=memcheck --leak-check=full --errors-for-leak-kinds=definite \
	--error-exitcode=99 --track-fds=no --log-file="$VGLOG" \
	./ncloudfs -f -o "api_url=$URL,cafile=$W/cert.pem,ttl=1,timeout=2" "$MNT" \
	>"$W/ncloudfs.log" 2>&1 &
VG_PID=$!
wait_for 60 mounted_or_gone && mounted || fail "ncloudfs did not mount in 60 s under valgrind"

echo "memcheck: full walk of $MNT/KR"
timeout --foreground "$WALK_TIMEOUT" find "$MNT/KR" -type f -exec cat {} + >/dev/null ||
	fail "the full walk failed without faults"
echo "memcheck: faults between reads of uncached images"
LIST=("$MNT/KR" -maxdepth 1) # lists the region: getServerImageList
after_ttl 503 3 getServerImageDetail "$MNT/SGN/200001" "$MNT/KR/100001"
after_ttl malformed 2 getServerImageList "${LIST[@]}"
after_ttl malformed 1 getServerImageDetail "$MNT/SGN/200002" "$MNT/KR/3135.json"
after_ttl truncated 1 getServerImageList "${LIST[@]}"
after_ttl truncated 1 getServerImageDetail "$MNT/SGN/200003" "$MNT/KR/999999"
after_ttl nonjson 1 getServerImageDetail "$MNT/SGN/200004"
after_ttl nonjson 1 getRegionList "$MNT/JPN"
after_ttl 429 1 getServerImageDetail "$MNT/SGN/200005"
after_ttl hang 1 getServerImageDetail "$MNT/JPN/300001"
after_ttl reset 1 getServerImageList "${LIST[@]}"
getfattr -n user.ncp.codeName "$MNT/KR/3135/osType" >/dev/null 2>&1
echo "memcheck: reads served stale during an outage (503 until cleared), a walk after the TTL"
after_ttl 503 -1 '*' "$MNT/KR/100001" "$MNT/KR/100002" "$MNT/KR/3135.json"
ctl fault/clear '{}' >/dev/null
sleep 1.1
read_tree "$MNT/KR"

echo "memcheck: API answers by status: $(ctl counts | "$PY" -c 'import json, sys
print(json.load(sys.stdin)["calls_by_status"])')"
echo "memcheck: daemon log lines: $(grep -c '^ncloudfs: error:' "$W/ncloudfs.log") errors," \
	"$(grep -c '^ncloudfs: warning:' "$W/ncloudfs.log") warnings (expected from the faults)"
fusermount3 -u "$MNT" || fail "fusermount3 -u failed"
wait_for 60 eval '! valgrind_runs' || fail "ncloudfs did not exit in 60 s after unmount"
wait "$VG_PID"
VG_RC=$?
VG_PID=

sed 's/^==[0-9]*== \{0,1\}//' "$VGLOG" |
	grep -E 'ERROR SUMMARY|LEAK SUMMARY|definitely lost:|indirectly lost:|possibly lost:|still reachable:|All heap blocks were freed'
echo "ncloudfs under valgrind exited $VG_RC"
if grep -q 'ERROR SUMMARY: 0 errors' "$VGLOG" && ! grep -q 'definitely lost: [1-9]' "$VGLOG" &&
	[ "$VG_RC" -eq 0 ]; then
	echo "memcheck: PASS"
	exit 0
fi
echo "memcheck: FAIL; valgrind's error and definite-leak records:"
sed 's/^==[0-9]*== \{0,1\}//' "$VGLOG" | awk 'BEGIN { RS = "" }
	/Invalid|uninitialised|definitely lost in|Mismatched|overlap|Syscall param|Jump to/ {
		print; print "" }' | head -n 200
exit 1
