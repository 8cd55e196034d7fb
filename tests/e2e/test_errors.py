# SPDX-License-Identifier: MIT
"""API failures end to end: each maps to its errno, is logged once with the API's own message,
never leaks the secret, and leaves the daemon serving."""

import errno
import os
import re
import subprocess
import threading

import pytest

import emu
from expect import read, errno_of, stats, wait_fetches_started

DETAIL = "getServerImageDetail"
# kind -> text of the API's message the log line must hold (None: the API sent none).
IO_FAULTS = {"500": "Unexpected Error", "503": "Endpoint Error", "429": "Rate Limited",
             "malformed": None, "truncated": None, "nonjson": None, "xml": None, "reset": None}
AUTH_FAULTS = {"401": "Authentication Failed", "403": "Forbidden"}


def error_lines(m):
    """The daemon's error lines so far."""
    return [line for line in m.log().splitlines() if re.search(r"\berror\b", line, re.I)]


def assert_serving_and_clean_exit(m):
    """The daemon is alive, still serves, and unmounts with exit 0."""
    assert m.proc.poll() is None
    assert read(m.path / "KR" / "3135" / "osType") == "UBUNTU\n"
    assert m.unmount() == 0


def test_wrong_secret_is_refused_at_mount_with_the_apis_message(emulator, mount):
    """A wrong secret mounts nothing: exit 1, the API's message, the host, where the keys
    came from, and no secret anywhere."""
    wrong = "wrong-secret-Zq81xKv0PpLm"
    m = mount(env={"NCLOUD_SECRET_ACCESS_KEY": wrong}, expect_fail=True)
    assert m.returncode == 1
    assert not emu.mountinfo_has(m.path)
    log = m.log()
    assert "cannot use the NCP API at 127.0.0.1:%d: Authentication Failed" % emulator.port \
        in log, log
    assert "the keys came from NCLOUD_ACCESS_KEY_ID and NCLOUD_SECRET_ACCESS_KEY" in log, log
    assert wrong not in log and emulator.secret_key not in log
    assert emulator.counts()["calls"]["getRegionList"] == 1


def test_unreachable_gateway_is_refused_at_mount_with_a_hint(emulator, mount):
    """Nothing listening at the gateway: exit 1, curl's reason, and the delay_connect hint."""
    m = mount("api_url=https://127.0.0.1:1", "retries=0", expect_fail=True, api_opts=False)
    assert m.returncode == 1
    log = m.log()
    assert "cannot use the NCP API at 127.0.0.1:1:" in log and "onnect" in log, log
    assert "-o delay_connect" in log, log


def test_wrong_secret_gives_eacces_and_logs_no_secret(emulator, mount):
    """With delay_connect a wrong secret mounts (mounting calls nothing), then ls answers
    EACCES, logged, no secret."""
    wrong = "wrong-secret-Zq81xKv0PpLm"
    m = mount("delay_connect", env={"NCLOUD_SECRET_ACCESS_KEY": wrong})
    m.allow_log(r"getRegionList: HTTP 401 code 200: Authentication Failed")
    assert emulator.counts()["calls"]["getRegionList"] == 0
    with pytest.raises(PermissionError):
        os.listdir(m.path)
    assert errno_of(read, m.path / "KR" / "3135" / "osType") == errno.EACCES
    assert emulator.counts()["auth_failures"] >= 1
    log = m.log()
    assert "Authentication Failed" in log
    assert wrong not in log
    assert emulator.secret_key not in log
    assert m.proc.poll() is None
    assert m.unmount() == 0
    assert wrong not in m.log() and emulator.secret_key not in m.log()


def test_debug_log_holds_no_secret(emulator, mount):
    """Even with -d (every request logged) the secret never reaches the log."""
    m = mount("-d")
    m.allow_log(r"unique: \d+, (error|success)")
    m.allow_log(r"^\s*(unique|INIT|flags|max_|time_gran|congestion|opcode)")
    assert read(m.path / "KR" / "3135" / "osType") == "UBUNTU\n"
    os.listdir(m.path / "KR")
    assert m.unmount() == 0
    assert emulator.secret_key not in m.log()


@pytest.mark.parametrize("kind", sorted(IO_FAULTS))
def test_io_fault_gives_eio_then_recovers(emulator, mount, kind):
    """Server errors, 429 and bad bodies give EIO, logged once; after the fault the read works."""
    m = mount()
    m.allow_log(r"error: getServerImageDetail KR/100004: ")
    os.stat(m.path / "KR")
    emulator.fault(kind, action=DETAIL, count=-1)
    assert errno_of(read, m.path / "KR" / "100004" / "osType") == errno.EIO
    lines = error_lines(m)
    assert len(lines) == 1, lines
    assert "getServerImageDetail KR/100004" in lines[0]
    if IO_FAULTS[kind]:
        assert IO_FAULTS[kind] in lines[0]
    emulator.clear_faults()
    assert read(m.path / "KR" / "100004" / "serverImageNo") == "100004\n"
    assert len(error_lines(m)) == 1
    assert_serving_and_clean_exit(m)


@pytest.mark.parametrize("kind", sorted(AUTH_FAULTS))
def test_auth_fault_gives_eacces(emulator, mount, kind):
    """A 401 or 403 answer gives EACCES, logged with the API's message; the daemon recovers."""
    m = mount()
    m.allow_log(r"error: getServerImageDetail KR/100004: HTTP %s " % kind)
    os.stat(m.path / "KR")
    emulator.fault(kind, action=DETAIL, count=-1)
    assert errno_of(read, m.path / "KR" / "100004" / "osType") == errno.EACCES
    lines = error_lines(m)
    assert len(lines) == 1 and AUTH_FAULTS[kind] in lines[0], lines
    emulator.clear_faults()
    assert read(m.path / "KR" / "100004" / "serverImageNo") == "100004\n"
    assert_serving_and_clean_exit(m)


@pytest.mark.parametrize("action, path", [("getRegionList", ""), ("getServerImageList", "KR")])
def test_listing_faults_give_eio(emulator, mount, action, path):
    """A failing region list or image list gives EIO for ls, logged; later it works
    (delay_connect: the region list is not fetched at mount)."""
    m = mount("delay_connect")
    m.allow_log(r"error: %s.*Endpoint Error" % action)
    emulator.fault("503", action=action, count=-1)
    assert errno_of(os.listdir, m.path / path) == errno.EIO
    assert any(action in line and "Endpoint Error" in line for line in error_lines(m))
    emulator.clear_faults()
    assert os.listdir(m.path / path)
    assert_serving_and_clean_exit(m)


def test_hang_times_out_with_eio(emulator, mount):
    """A request that never gets answered gives EIO after -o timeout, not a hung reader."""
    m = mount("timeout=1")
    m.allow_log(r"error: getServerImageDetail KR/100004: .*(timeout|timed out)")
    os.stat(m.path / "KR")
    emulator.fault("hang", action=DETAIL, count=-1)
    code = ("import errno, sys\n"
            "try:\n"
            "    open(sys.argv[1]).read()\n"
            "except OSError as e:\n"
            "    print(errno.errorcode[e.errno])\n"
            "else:\n"
            "    print('OK')\n")
    try:
        done = subprocess.run([emu.PYTHON, "-c", code, str(m.path / "KR" / "100004" / "osType")],
                              capture_output=True, text=True, timeout=20)
    finally:
        emulator.clear_faults()
    assert done.stdout.strip() == "EIO", done
    lines = error_lines(m)
    assert len(lines) == 1 and "getServerImageDetail KR/100004" in lines[0], lines
    assert read(m.path / "KR" / "100004" / "serverImageNo") == "100004\n"
    assert_serving_and_clean_exit(m)


def test_hung_image_does_not_block_other_images(emulator, mount):
    """While one image's request hangs, other images of the same region are still served."""
    m = mount("timeout=120")  # only clear_faults below ends the hang (the emulator's, 60 s)
    m.allow_log(r"error: getServerImageDetail KR/100011: ")
    os.stat(m.path / "KR")
    emulator.fault("hang", action=DETAIL, count=-1, match="serverImageNo=100011")
    results = {}

    def reader(no):
        """Read one image's serverImageNo into results (an errno on failure)."""
        try:
            results[no] = read(m.path / "KR" / no / "serverImageNo")
        except OSError as e:
            results[no] = e.errno

    hung = threading.Thread(target=reader, args=("100011",), daemon=True)
    other = threading.Thread(target=reader, args=("100012",), daemon=True)
    misses = stats(m.path)["cache_misses"]
    hung.start()
    try:
        wait_fetches_started(m.path, misses)  # 100011's detail call is at the emulator, hung
        other.start()
        other.join(60)
        assert not other.is_alive(), "reading 100012 waited for the hung 100011"
        assert results.get("100012") == "100012\n", results
        assert hung.is_alive() and "100011" not in results, results
    finally:
        emulator.clear_faults()
        hung.join(60)
        if other.ident:
            other.join(60)
    assert not hung.is_alive(), "the hung read did not end once the emulator let go"
    assert results["100011"] in (errno.EIO, "100011\n")
    assert_serving_and_clean_exit(m)


@pytest.mark.parametrize("shape", ["400", "empty"])
def test_not_found_is_enoent_and_not_an_error(emulator, mount, shape):
    """A missing image (either shape) is ENOENT and logs no error or warning."""
    emulator.notfound(shape)
    m = mount()
    assert errno_of(os.stat, m.path / "KR" / "999999") == errno.ENOENT
    assert errno_of(read, m.path / "SGN" / "4242" / "osType") == errno.ENOENT
    assert errno_of(read, m.path / "KR" / "999998.json") == errno.ENOENT
    assert emulator.counts()["calls"][DETAIL] == 3
    assert error_lines(m) == []
    assert not re.search(r"warning|999999|4242", m.log(), re.I), m.log()
    assert_serving_and_clean_exit(m)


def test_daemon_survives_every_fault_in_a_row(emulator, mount):
    """One daemon goes through every fault kind, still serves, and exits 0."""
    m = mount("timeout=2", "retries=0")  # no retries: one failed request per fault, quickly
    m.allow_log(r"error: getServerImageDetail KR/1000\d\d: ")
    os.stat(m.path / "KR")
    expected = {**{k: errno.EIO for k in IO_FAULTS}, **{k: errno.EACCES for k in AUTH_FAULTS},
                "504": errno.EIO}
    for i, (kind, want) in enumerate(sorted(expected.items())):
        no = 100001 + i
        emulator.fault(kind, action=DETAIL, count=-1)
        assert errno_of(read, m.path / "KR" / str(no) / "osType") == want, kind
        emulator.clear_faults()
        assert read(m.path / "KR" / str(no) / "serverImageNo") == "%d\n" % no, kind
    assert len(error_lines(m)) == len(expected)
    assert_serving_and_clean_exit(m)
