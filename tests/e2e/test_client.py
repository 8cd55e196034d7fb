# SPDX-License-Identifier: MIT
"""The NCP client alone against the emulator, through tests/e2e/ncp_probe: the per-thread
cancel hook (ncp_set_cancel) and the per-client limit on requests in flight. Every check
counts requests in the emulator's log; none times anything."""

import os
import subprocess
import time

import pytest

import emu

PROBE = emu.REPO / "tests" / "e2e" / "ncp_probe"
TIMEOUT = 30  # the client's bound on each request: cancelled calls must end well before


def probe(emulator, images, cancel_after=-1.0, max_requests=0, retries=3, tmp_home=None):
    """Run ncp_probe on images (KR numbers), one thread each; return its "key: value" lines
    as a dict (call.N values as [kind, errno, attempts]; the seconds it took are left out:
    nothing here is timed)."""
    if not os.access(PROBE, os.X_OK):
        pytest.fail("%s is missing: run `make` at the repo root" % PROBE, pytrace=False)
    env = emu.daemon_env(emulator, tmp_home or "/nonexistent")
    args = [str(PROBE), emulator.url, emulator.cafile or "", str(TIMEOUT), str(retries),
            str(max_requests), str(cancel_after), *[str(i) for i in images]]
    # Well under TIMEOUT: a call that is not cancelled would make this fail.
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=TIMEOUT - 10)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    out = {}
    for line in done.stdout.splitlines():
        key, _, value = line.partition(": ")
        out[key] = value.split()[:3] if key.startswith("call.") else value
    return out


def detail_requests(emulator):
    """The emulator's logged getServerImageDetail requests, oldest first."""
    return [r for r in emulator.requests() if r["action"] == "getServerImageDetail"]


def wait_requests(emulator, n, seconds=10):
    """Wait until the emulator logged n detail requests (a released hang is logged when its
    connection is dropped); return them."""
    deadline = time.monotonic() + seconds
    while len(detail_requests(emulator)) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return detail_requests(emulator)


# --- cancellation ---------------------------------------------------------------------------

def test_cancel_ends_a_hanging_call_with_one_request(emulator):
    """A call that hangs is given up once its thread's cancel check turns true: EINTR, one
    request, no retry; the next call on the same client works."""
    emulator.fault("hang", action="getServerImageDetail")
    out = probe(emulator, [3135], cancel_after=0.2)
    assert out["call.0"] == ["cancelled", "4", "1"]  # EINTR, one try
    assert out["cancelled"] == "1" and out["retries"] == "0"
    assert out["after"] == "ok"
    emulator.clear_faults()  # releases the hung request, which is then logged
    statuses = sorted(r["status"] for r in wait_requests(emulator, 2))
    assert statuses == [0, 200]  # the hung one and the later call: no retry


def test_cancel_during_backoff_makes_no_further_try(emulator):
    """A 503 with a long Retry-After puts the call in backoff; the cancel check ends it there,
    with no second try."""
    emulator.fault("503", action="getServerImageDetail", retry_after=20)
    out = probe(emulator, [3135], cancel_after=0.2)
    assert out["call.0"] == ["cancelled", "4", "1"]
    assert out["cancelled"] == "1" and out["retries"] == "0"
    assert out["after"] == "ok"
    assert [r["status"] for r in detail_requests(emulator)] == [503, 200]


def test_cancelled_before_the_call_sends_nothing(emulator):
    """A cancel check already true: the call fails at once and sends no request."""
    out = probe(emulator, [3135], cancel_after=0)
    assert out["call.0"] == ["cancelled", "4", "0"]
    assert out["cancelled"] == "1"
    assert out["after"] == "ok"
    assert [r["status"] for r in detail_requests(emulator)] == [200]


def test_cancel_while_waiting_for_a_slot(emulator):
    """With max_requests=1 and the one request hanging, a second thread (started 0.1 s
    later) waits for a slot; it gives up on its cancel check before the first does, and
    only the hanging request was sent."""
    emulator.fault("hang", action="getServerImageDetail")
    out = probe(emulator, ["3135@1", "100001@0.2@0.1"], max_requests=1)
    assert out["call.0"] == ["cancelled", "4", "1"]
    assert out["call.1"] == ["cancelled", "4", "0"]  # never got a slot
    assert out["cancelled"] == "2" and out["in_flight_peak"] == "1"
    assert out["after"] == "ok"  # the slot was given back
    emulator.clear_faults()
    statuses = sorted(r["status"] for r in wait_requests(emulator, 2))
    assert statuses == [0, 200]


@pytest.mark.emulator(images=64)
def test_limit_holds_for_many_threads(emulator):
    """64 threads, max_requests=4: all answered, never more than 4 requests in flight."""
    emulator.latency(0.05, "getServerImageDetail")
    out = probe(emulator, [100001 + i for i in range(64)], max_requests=4)
    assert all(out["call.%d" % i] == ["ok", "0", "1"] for i in range(64)), out
    assert out["in_flight_peak"] == "4" and out["limit"] == "4"
    assert len(detail_requests(emulator)) == 65


def test_no_cancel_check_no_change(emulator):
    """Without a cancel check a call behaves as before: retried through a 503."""
    emulator.fault("503", action="getServerImageDetail", retry_after=0)
    out = probe(emulator, [3135])
    assert out["call.0"] == ["ok", "0", "2"]
    assert out["cancelled"] == "0"
