# SPDX-License-Identifier: MIT
"""Holding up: retries with backoff, bounded waits, stale-if-error, hostile responses,
and credential hygiene. Every check counts calls or outcomes; none times anything."""

import errno
import os
import re
import stat
import threading

import pytest
from expect import read, errno_of, stats, wait_fetches_started

DETAIL = "getServerImageDetail"


def detail_calls(emulator):
    """getServerImageDetail calls so far."""
    return emulator.counts()["calls"][DETAIL]


def warm_region_list(m):
    """Fetch the region list, so later counts are of image calls only."""
    os.stat(m.path / "KR")


# --- retries -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["500", "503", "429", "reset", "truncated"])
def test_transient_failures_are_retried(emulator, mount, kind):
    """Two failures in a row, then success: the read works, after exactly three tries."""
    m = mount("retries=3")
    m.allow_log(r"error")  # nothing is logged for a call that succeeds in the end
    warm_region_list(m)
    emulator.reset()
    emulator.fault(kind, action=DETAIL, count=2, retry_after=1)
    assert read(m.path / "KR" / "100003" / "osType").endswith("\n")
    assert detail_calls(emulator) == 3
    assert "error" not in m.log().lower()


def test_retries_give_up_after_the_configured_number(emulator, mount):
    """A 503 that never ends: retries=2 makes three tries, then EIO."""
    m = mount("retries=2")
    m.allow_log(r"getServerImageDetail KR/100003: HTTP 503")
    warm_region_list(m)
    emulator.reset()
    emulator.fault("503", action=DETAIL, count=-1)
    assert errno_of(read, m.path / "KR" / "100003" / "osType") == errno.EIO
    assert detail_calls(emulator) == 3


@pytest.mark.parametrize("kind,code", [("401", errno.EACCES), ("403", errno.EACCES)])
def test_other_4xx_are_never_retried(emulator, mount, kind, code):
    """401 and 403 are answered at once: one call, EACCES."""
    m = mount("retries=3")
    m.allow_log(r"getServerImageDetail KR/100003: HTTP 40[13]")
    warm_region_list(m)
    emulator.reset()
    emulator.fault(kind, action=DETAIL, count=-1)
    assert errno_of(read, m.path / "KR" / "100003" / "osType") == code
    assert detail_calls(emulator) == 1


def test_no_such_image_is_not_retried(emulator, mount):
    """A 400 'no such image' is one call and ENOENT."""
    m = mount("retries=3")
    warm_region_list(m)
    emulator.reset()
    assert errno_of(os.stat, m.path / "KR" / "424242") == errno.ENOENT
    assert detail_calls(emulator) == 1


def test_retries_zero_means_one_try(emulator, mount):
    """retries=0: a single 503 is an EIO."""
    m = mount("retries=0")
    m.allow_log(r"HTTP 503")
    warm_region_list(m)
    emulator.reset()
    emulator.fault("503", action=DETAIL, count=1)
    assert errno_of(read, m.path / "KR" / "100003" / "osType") == errno.EIO
    assert detail_calls(emulator) == 1


# --- bounded waits ---------------------------------------------------------------------------

def test_a_hanging_fetch_blocks_nothing_else(emulator, mount):
    """While one image's fetch hangs, cached files and other images still answer; once the
    emulator lets go, the hung reader ends (the timeout's EIO: test_errors' hang test)."""
    m = mount("timeout=120", "retries=0")  # only clear_faults below ends the hang
    m.allow_log(r"getServerImageDetail KR/100004: ")
    assert read(m.path / "KR" / "3135" / "osType") == "UBUNTU\n"
    emulator.fault("hang", action=DETAIL, count=-1, match="serverImageNo=100004&")
    outcome = {}

    def hang():
        try:
            outcome["value"] = read(m.path / "KR" / "100004" / "osType")
        except OSError as e:
            outcome["value"] = e.errno

    t = threading.Thread(target=hang)
    misses = stats(m.path)["cache_misses"]
    t.start()
    try:
        wait_fetches_started(m.path, misses)
        # The hanging request is in flight; the rest of the mount answers.
        assert read(m.path / "KR" / "3135" / "createDate").startswith("2025-06-20")
        assert read(m.path / "KR" / "100005" / "serverImageNo") == "100005\n"
        assert t.is_alive() and not outcome, outcome
    finally:
        emulator.clear_faults()
        t.join(60)
    assert not t.is_alive(), "the hung read did not end once the emulator dropped the call"
    # The dropped call fails (EIO), unless curl resends it on a fresh connection, as it does
    # when the dropped one was reused: then the fault is gone and the read works.
    assert outcome["value"] in (errno.EIO, read(m.path / "KR" / "100004" / "osType")), outcome
    assert m.proc.poll() is None


# --- stale-if-error --------------------------------------------------------------------------

def test_stale_data_stands_in_for_a_failed_refresh(emulator, mount):
    """ttl=1, stale=60: after the ttl, a failing refresh serves the last good data, warned once."""
    m = mount("ttl=1", "stale=60", "retries=0")
    m.allow_log(r"HTTP 503")
    m.allow_log(r"refresh failed; serving the answer from")
    path = m.path / "KR" / "3135" / "osType"
    assert read(path) == "UBUNTU\n"
    names = sorted(os.listdir(m.path / "KR"))
    emulator.fault("503", count=-1)
    threading.Event().wait(1.3)
    for _ in range(3):
        assert read(path) == "UBUNTU\n"
        assert sorted(os.listdir(m.path / "KR")) == names
        assert sorted(os.listdir(m.path)) == ["JPN", "KR", "SGN"]
        threading.Event().wait(1.1)
    warnings = [l for l in m.log().splitlines() if "serving the answer from" in l]
    assert len([l for l in warnings if "KR/3135" in l]) == 1, warnings
    assert len([l for l in warnings if "getRegionList" in l]) == 1, warnings
    emulator.clear_faults()


def test_stale_data_expires(emulator, mount):
    """stale=1: once ttl + stale have passed, the error comes through."""
    m = mount("ttl=1", "stale=1", "retries=0")
    m.allow_log(r"HTTP 503|refresh failed")
    path = m.path / "KR" / "3135" / "osType"
    assert read(path) == "UBUNTU\n"
    emulator.fault("503", count=-1)
    threading.Event().wait(2.5)
    assert errno_of(read, path) == errno.EIO
    emulator.clear_faults()


def test_a_failed_listing_is_never_an_empty_directory(emulator, mount):
    """With nothing cached, a failing listing is EIO, not an empty directory."""
    m = mount("retries=0")
    m.allow_log(r"HTTP 503")
    warm_region_list(m)
    emulator.fault("503", action="getServerImageList", count=-1)
    assert errno_of(os.listdir, m.path / "KR") == errno.EIO
    emulator.clear_faults()
    assert "3135" in os.listdir(m.path / "KR")


# --- hostile responses -----------------------------------------------------------------------

def put(emulator, no, **fields):
    """Store a copy of the sample image under a new number, with extra fields."""
    image = dict(emulator.image("KR", "3135"), serverImageNo=str(no))
    image.update(fields)
    emulator.put_image("KR", image)


def nested(depth):
    """An object nested depth levels deep."""
    value = "bottom"
    for _ in range(depth):
        value = {"d": value}
    return value


def test_hostile_images_are_eio_and_the_daemon_keeps_serving(emulator, mount):
    """Too deep, too big a number, over 16 MiB: EIO each, and everything else still works."""
    m = mount("retries=0")
    m.allow_log(r"getServerImageDetail KR/50000[123]")
    put(emulator, 500001, deep=nested(70))
    put(emulator, 500002, huge=10 ** 30)
    put(emulator, 500003, blob="x" * (17 << 20))
    for no in (500001, 500002, 500003):
        assert errno_of(os.stat, m.path / "KR" / str(no)) == errno.EIO
    assert read(m.path / "KR" / "3135" / "osType") == "UBUNTU\n"
    assert m.proc.poll() is None
    # The answer that was too deep was a good 200: its line carries the request id.
    assert re.search(r"KR/500001: unusable image: .*deeper.* \(request [0-9a-f-]{36}\)",
                     m.log()), m.log()


def test_nesting_up_to_the_limit_is_served(emulator, mount):
    """60 levels are fine: the bottom file reads back."""
    m = mount()
    put(emulator, 500004, deep=nested(60))
    path = m.path / "KR" / "500004" / "deep" / "/".join(["d"] * 60)
    assert read(path) == "bottom\n"


def test_keys_that_are_not_file_names_are_left_out(emulator, mount):
    """Keys '', '.', '..', 'a/b' and 300 bytes are left out, with one warning; the rest serves."""
    m = mount()
    m.allow_log(r"left out 5 key\(s\) that are not valid file names")
    put(emulator, 500005, **{"": 1, ".": 2, "..": 3, "a/b": 4, "k" * 300: 5, "fine": 6})
    entries = os.listdir(m.path / "KR" / "500005")
    assert "fine" in entries and "a/b" not in entries and "" not in entries
    assert read(m.path / "KR" / "500005" / "fine") == "6\n"


# --- security --------------------------------------------------------------------------------

def write_config(home, mode, text):
    """Write ~/.ncloud/configure with the given mode."""
    d = home / ".ncloud"
    d.mkdir(exist_ok=True)
    path = d / "configure"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_a_config_file_others_can_read_is_refused(emulator, mount):
    """Mode 0644 credentials: refused before mounting, naming the file and chmod 600."""
    path = write_config(mount.home, 0o644, "[DEFAULT]\nncloud_access_key_id = %s\n"
                        "ncloud_secret_access_key = %s\n" % (emulator.access_key,
                                                             emulator.secret_key))
    m = mount(env={"NCLOUD_ACCESS_KEY_ID": None, "NCLOUD_SECRET_ACCESS_KEY": None},
              expect_fail=True)
    assert m.returncode != 0
    assert str(path) in m.log() and "run: chmod 600 %s" % path in m.log(), m.log()
    assert emulator.secret_key not in m.log()
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    ok = mount(env={"NCLOUD_ACCESS_KEY_ID": None, "NCLOUD_SECRET_ACCESS_KEY": None})
    assert read(ok.path / "KR" / "3135" / "osType") == "UBUNTU\n"


def test_the_secret_is_in_no_log_nor_process_listing(emulator, mount):
    """With -d, after reads and an auth failure: the secret is in no log, cmdline or environ."""
    m = mount("-d")
    m.allow_log(r"unique: \d+, error: ")  # libfuse's trace of ENOENT answers
    m.allow_log(r"getServerImageDetail KR/100002: HTTP 401")
    assert read(m.path / "KR" / "3135" / "osType") == "UBUNTU\n"
    os.path.exists(m.path / "KR" / "999999")
    emulator.fault("401", action=DETAIL, count=1)
    errno_of(os.stat, m.path / "KR" / "100002")
    pid = m.proc.pid
    secret = emulator.secret_key.encode()
    assert secret not in open("/proc/%d/cmdline" % pid, "rb").read()
    assert secret not in open("/proc/%d/environ" % pid, "rb").read()
    assert emulator.secret_key not in m.log()
    assert m.unmount() == 0
    assert emulator.secret_key not in m.log()


def test_plain_http_is_refused_unless_loopback(emulator, mount):
    """http:// to another host is refused before mounting; nothing turns TLS checks off."""
    m = mount("api_url=http://ncloud.example.com", expect_fail=True)
    assert m.returncode != 0
    assert "refusing plain http:// to ncloud.example.com" in m.log(), m.log()
    bad = mount("api_url=%s" % emulator.url, "cafile=/dev/null", expect_fail=True)
    assert bad.returncode != 0
    assert "CA file /dev/null holds no PEM certificate" in bad.log(), bad.log()


@pytest.mark.emulator(http=True)
def test_plain_http_to_loopback_works(emulator, mount):
    """http://127.0.0.1 is allowed: nothing on the wire leaves the machine."""
    m = mount()
    assert read(m.path / "KR" / "3135" / "osType") == "UBUNTU\n"


@pytest.mark.parametrize("opt", ["retries=-1", "retries=abc", "retries=100", "stale=x",
                                 "stale=-5", "timeout=soon"])
def test_bad_robustness_options_are_refused(mount, opt):
    """Bad values exit non-zero before mounting, naming the option."""
    m = mount(opt, expect_fail=True)
    assert m.returncode != 0
    name, _, value = opt.partition("=")
    assert "ncloudfs: invalid %s '%s': expected a " % (name, value) in m.log(), m.log()
