# SPDX-License-Identifier: MIT
"""The stateful core on real mounts: accounts whose names collide, directory reads that
cost one listing, memory that comes back, and caches dropped while a fetch is on its way."""

import os
import re
import signal
import subprocess
import threading
import time

import emu
import pytest
from expect import read, wait_until, wait_fetches_started

DETAIL, LIST, REGIONS = "getServerImageDetail", "getServerImageList", "getRegionList"
# Sanitizers' allocators keep freed memory: RSS tells nothing there.
SANITIZED = bool(re.search(r"(?:^|\s)SANITIZE=\S", os.environ.get("MAKEFLAGS", ""))
                 or os.environ.get("SANITIZE"))


def calls(emulator):
    """The emulator's API call counts by action."""
    return emulator.counts()["calls"]


def name_images(emulator, names):
    """Give the region's first images these serverImageNames; return their numbers."""
    nos = emulator.images("KR")[:len(names)]
    for no, name in zip(nos, names):
        emulator.set_field("KR", no, ["serverImageName"], name)
    return [str(no) for no in nos]


def check_by_name(region):
    """Every .by-name entry is unique and leads to an image carrying that name."""
    byname = region / ".by-name"
    names = os.listdir(byname)
    assert len(names) == len(set(names))
    for name in names:
        target = os.readlink(byname / name)
        assert target.startswith("../")
        no = target[3:]
        real = read(region / no / "serverImageName").rstrip("\n")
        assert name == real or name == real + "~" + no, (name, real, no)
    return names


@pytest.mark.emulator(images=4)
def test_shared_long_names_list_whole(emulator, mount):
    """Two pairs of images sharing a 30-character name: all four listed, the daemon lives."""
    a, b = "nightly-backup-web-2025-06-20-", "nightly-backup-db-2025-06-20-0"
    nos = name_images(emulator, [a, a, b, b])
    m = mount()
    names = check_by_name(m.path / "KR")
    for want in (a + "~" + nos[0], a + "~" + nos[1], b + "~" + nos[2], b + "~" + nos[3]):
        assert want in names
    assert a not in names and b not in names
    assert "KR" in os.listdir(m.path)  # the daemon is alive


@pytest.mark.emulator(images=4)
def test_a_real_name_equal_to_a_generated_one(emulator, mount):
    """Images named web, web, and web~<first>: every .by-name entry is unique."""
    nos = emulator.images("KR")[:3]
    nos = name_images(emulator, ["web", "web", "web~%s" % nos[0]])
    m = mount()
    names = check_by_name(m.path / "KR")
    assert len(names) == len(emulator.images("KR"))
    assert os.readlink(m.path / "KR" / ".by-name" / ("web~" + nos[0])) == "../" + nos[0]


@pytest.mark.emulator(images=1001)
def test_one_directory_read_costs_one_listing_with_ttl_zero(emulator, mount):
    """With ttl=0, `ls` of 1,002 images reads the listing once (two pages), not per chunk."""
    m = mount("ttl=0")
    listed = os.listdir(m.path / "KR")
    assert sorted(listed, key=int) == emulator.images("KR")
    assert calls(emulator)[LIST] == 2


def rss_kib(pid):
    """The process's resident set in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def stats(m):
    """/.stats as a dict of integers."""
    out = {}
    for line in read(m.path / ".stats").splitlines():
        key, value = line.split(": ")
        out[key] = int(float(value))
    return out


@pytest.mark.emulator(images=3000)
def test_deleted_images_give_their_memory_back(emulator, mount):
    """Images listed and then deleted are reclaimed: cache_images falls to 0, RSS comes back."""
    m = mount("ttl=1", "stale=0")
    region = m.path / "KR"
    read(region / emulator.images("KR")[0] / "osType")
    base = rss_kib(m.proc.pid)
    total = len(emulator.images("KR"))
    assert len(os.listdir(region)) == total
    peak = rss_kib(m.proc.pid)
    assert stats(m)["cache_images"] == total
    for no in emulator.images("KR"):
        emulator.delete_image("KR", no)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        os.listdir(region)  # the listing now says they are gone
        if stats(m)["cache_images"] == 0:
            break
        time.sleep(0.5)
    assert stats(m)["cache_images"] == 0
    assert stats(m)["cache_reclaimed"] >= total
    after = rss_kib(m.proc.pid)
    if not SANITIZED:
        assert after - base < (peak - base) / 2, (base, peak, after)


def test_missing_numbers_are_reclaimed(emulator, mount):
    """Looking up many missing numbers leaves nothing behind once negative_ttl has passed."""
    m = mount("ttl=1", "negative_ttl=1")
    region = m.path / "KR"
    for i in range(300):
        assert not os.path.exists(region / str(900000 + i))
    assert stats(m)["cache_images"] >= 300
    deadline = time.monotonic() + 30
    while stats(m)["cache_images"] > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stats(m)["cache_images"] == 0


def test_sighup_during_a_fetch_leaves_it_unfresh(emulator, mount):
    """An answer on its way when SIGHUP drops the caches is not kept as fresh."""
    m = mount("ttl=60", "timeout=120")  # only clear_faults below ends the hang
    path = m.path / "KR" / "3135" / "osType"
    os.listdir(m.path)  # the region list, before the slow call
    emulator.fault("hang", action=DETAIL, count=1)
    done = threading.Event()
    result = {}

    def reader():
        result["value"] = read(path)
        done.set()

    def answered():
        return emulator.counts()["calls_by_status"].get(DETAIL + " 200", 0)

    misses = stats(m)["cache_misses"]
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    wait_fetches_started(m.path, misses)  # the detail call is on its way, hung
    assert not done.is_set()
    m.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: dropped every cache" in m.log(), "the SIGHUP's drop")
    assert not done.is_set()
    emulator.clear_faults()  # the hung call is dropped; the daemon's retry is answered
    assert done.wait(60)
    assert result["value"] == "UBUNTU\n"
    assert answered() == 1
    assert read(path) == "UBUNTU\n"
    assert answered() == 2
    assert read(path) == "UBUNTU\n"
    assert answered() == 2


# x86_64: stat, lstat, newfstatat, statx; write, writev.
STAT_CALLS = {4, 6, 262, 332}
WRITE_CALLS = {1, 20}


def in_syscall(pid, tid, numbers):
    """Tell whether thread tid of pid is blocked in one of these system calls; return its
    first argument (a file descriptor for writes), or None."""
    try:
        with open("/proc/%d/task/%d/syscall" % (pid, tid)) as f:
            fields = f.read().split()
    except OSError:
        return None
    if not fields or fields[0] in ("running", "-1") or int(fields[0]) not in numbers:
        return None
    return int(fields[1], 16)


def daemon_writing_to_fuse(pid):
    """Tell whether a thread of the daemon is blocked writing to /dev/fuse."""
    for tid in os.listdir("/proc/%d/task" % pid):
        fd = in_syscall(pid, int(tid), WRITE_CALLS)
        try:
            if fd is not None and os.readlink("/proc/%d/fd/%d" % (pid, fd)) == "/dev/fuse":
                return True
        except OSError:
            pass
    return False


def exists_at(fd, name):
    """Tell whether name exists in the directory open as fd."""
    try:
        os.stat(name, dir_fd=fd)
        return True
    except OSError:
        return False


def test_unmount_finishes_with_lookups_queued(emulator, mount):
    """SIGTERM while the kernel holds lookups nobody will answer and a SIGHUP's notes
    wait behind them: the daemon still exits, and the mount goes."""
    m = mount("max_threads=2", "ttl=60")
    region = m.path / "KR"
    os.listdir(region)
    emulator.latency(3, DETAIL)
    # lookups in the region itself (through a descriptor: no walk from the root, whose
    # attributes the kernel does not keep), so that they hold the region's lock
    fd = os.open(region, os.O_RDONLY | os.O_DIRECTORY)
    lookups = []
    for i in range(12):
        t = threading.Thread(target=exists_at, args=(fd, str(800000 + i)), daemon=True)
        t.start()
        lookups.append(t)
    # Every lookup is asleep in its stat(2), in the daemon or in the kernel's queue.
    wait_until(lambda: all(in_syscall(os.getpid(), t.native_id, STAT_CALLS) for t in lookups
                           if t.is_alive()), "the lookups to block in stat(2)")
    m.proc.send_signal(signal.SIGHUP)
    # The SIGHUP's notes: the notifier is stuck writing one to /dev/fuse.
    wait_until(lambda: daemon_writing_to_fuse(m.proc.pid), "the notifier to block on a note")
    m.proc.send_signal(signal.SIGTERM)
    try:
        code = m.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        # A forced unmount ends the connection, so nothing is left stuck behind.
        subprocess.run(["umount", "-f", "-l", str(m.path)], check=False)
        m.proc.kill()
        pytest.fail("the daemon did not exit:\n" + m.log())
    assert code == 0, m.log()
    assert "ending the connection" in m.log()  # the case this test is about happened
    m.allow_log(r"fusermount3?: .*|umount")
    deadline = time.monotonic() + 10
    while emu.mountinfo_has(m.path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not emu.mountinfo_has(m.path)
    os.close(fd)
