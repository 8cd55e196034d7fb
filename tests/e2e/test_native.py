# SPDX-License-Identifier: MIT
"""Feeling native: mount(8)'s arguments and options, sites, .by-name links, /.stats,
SIGHUP, and the log option."""

import errno
import os
import re
import signal
import time

import pytest

import emu
from expect import read, errno_of


def stats(m):
    """/.stats as a dict of ints."""
    out = {}
    for line in read(m.path / ".stats").splitlines():
        key, _, value = line.partition(": ")
        out[key] = int(value)
    return out


def wait_for(predicate, seconds=10):
    """Poll until predicate() holds (or give up); return its last value."""
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


# --- mount(8) -----------------------------------------------------------------------------

def run_daemon(emulator, tmp_path, positional, options):
    """Run ./ncloudfs -f POSITIONAL... -o OPTIONS MNT as mount(8) would; return the Daemon."""
    home = tmp_path / "home8"
    home.mkdir(exist_ok=True)
    opts = "api_url=%s,cafile=%s,%s" % (emulator.url, emulator.cafile, options)
    return emu.Daemon(tmp_path / "mnt8", ["-f", *positional, "-o", opts],
                      emu.daemon_env(emulator, home), tmp_path / "ncloudfs8.log")


def test_mount8_source_argument_and_options_are_accepted(emulator, tmp_path):
    """`ncloudfs SOURCE MNT -o _netdev,noauto,nofail,user,rw,x-systemd.*,comment=`: mounts."""
    d = run_daemon(emulator, tmp_path, ["ncloudfs"],
                   "_netdev,noauto,nofail,user,users,nouser,auto,defaults,rw,"
                   "x-systemd.automount,x-systemd.requires=network.target,comment=ncp")
    try:
        d.start().wait_mounted()
        assert read(d.path / "KR" / "3135" / "osType") == "UBUNTU\n"
        with open("/proc/self/mountinfo") as f:
            line = next(l for l in f if " %s " % d.path in l)
        assert re.search(r" ro[, ]", line)
    finally:
        code = d.unmount()
    assert code == 0
    assert not re.search(r"error|warning", d.log(), re.I), d.log()


def test_three_positional_arguments_are_refused(emulator, tmp_path):
    """One SOURCE and one MOUNTPOINT at most."""
    d = run_daemon(emulator, tmp_path, ["one", "two"], "ttl=5")
    try:
        d.start()
        assert d.wait_exit() not in (None, 0)
        assert "too many arguments" in d.log()
    finally:
        d.unmount()


# --- sites --------------------------------------------------------------------------------

@pytest.mark.parametrize("how", ["option", "env"])
def test_site_selects_the_gateway_and_errors_name_its_host(mount, how):
    """site=gov goes to the gov gateway (unreachable here): the check at mount fails naming
    the host; with delay_connect the mount comes up and ls gives EIO, logged likewise."""
    env = {"NCLOUD_SITE": "gov"} if how == "env" else None
    opts = ["site=gov"] if how == "option" else []
    refused = mount(*opts, "timeout=2", "retries=0", env=env, api_opts=False, expect_fail=True)
    assert refused.returncode == 1
    assert "cannot use the NCP API at ncloud.apigw.gov-ntruss.com" in refused.log()
    m = mount(*opts, "timeout=2", "retries=0", "delay_connect", env=env, api_opts=False)
    m.allow_log(r"getRegionList: .*ncloud\.apigw\.gov-ntruss\.com")
    assert errno_of(os.listdir, m.path) == errno.EIO
    assert "ncloud.apigw.gov-ntruss.com" in m.log()


def test_api_url_wins_over_site(emulator, mount):
    """An explicit api_url beats site=fin."""
    m = mount("site=fin")
    assert read(m.path / "KR" / "3135" / "osType") == "UBUNTU\n"


@pytest.mark.parametrize("opt,env", [("site=mars", None), (None, {"NCLOUD_SITE": "moon"})])
def test_unknown_sites_are_refused(mount, opt, env):
    """An unknown site exits 1 before mounting, saying which sites exist."""
    m = mount(*([opt] if opt else []), env=env, expect_fail=True)
    assert m.returncode != 0
    site = "'mars'" if opt else "'moon' (from NCLOUD_SITE)"
    assert "ncloudfs: invalid site %s: expected public, gov or fin" % site in m.log(), m.log()


# --- .by-name -----------------------------------------------------------------------------

def test_by_name_links_point_at_their_images(emulator, mount):
    """Every listed image with a usable name has .by-name/<name> -> ../<no>; it is not listed."""
    m = mount()
    byname = m.path / "KR" / ".by-name"
    assert ".by-name" not in os.listdir(m.path / "KR")
    names = {}
    for no in emulator.images("KR"):
        names.setdefault(emulator.image("KR", no)["serverImageName"], []).append(no)
    entries = sorted(os.listdir(byname))
    assert entries == sorted(n for n, nos in names.items() if len(nos) == 1)
    for name in entries[:10]:
        assert os.readlink(byname / name) == "../%s" % names[name][0]
        assert read(byname / name / "serverImageName") == name + "\n"
    st = os.lstat(byname / "test-img")
    assert st.st_mode & 0o170000 == 0o120000 and st.st_size == len("../3135")
    assert st.st_mtime == 1750381179  # the image's createDate


def test_by_name_collisions_and_bad_names(emulator, mount):
    """Shared names get ~<no>; names that are not file names are left out, logged once."""
    base = emulator.image("KR", "3135")
    for no, name in (("600001", "twin"), ("600002", "twin"), ("600003", "a/b"),
                     ("600004", "..")):
        emulator.put_image("KR", dict(base, serverImageNo=no, serverImageName=name))
    m = mount()
    m.allow_log(r"KR/60000[34]: serverImageName is not a valid file name")
    byname = m.path / "KR" / ".by-name"
    entries = os.listdir(byname)
    assert "twin~600001" in entries and "twin~600002" in entries and "twin" not in entries
    assert os.readlink(byname / "twin~600002") == "../600002"
    assert not any(e in entries for e in ("a/b", ".."))
    os.listdir(byname)
    assert errno_of(os.lstat, byname / "twin") == errno.ENOENT
    logged = [l for l in m.log().splitlines() if "not a valid file name" in l]
    assert len(logged) == 2, logged


def test_by_name_follows_a_rename_after_the_ttl(emulator, mount):
    """A renamed image moves in .by-name once the ttl has passed."""
    m = mount("ttl=1")
    byname = m.path / "KR" / ".by-name"
    assert "test-img" in os.listdir(byname)
    emulator.set_field("KR", "3135", ["serverImageName"], "renamed-img")
    time.sleep(1.3)
    entries = os.listdir(byname)
    assert "renamed-img" in entries and "test-img" not in entries
    assert os.readlink(byname / "renamed-img") == "../3135"


# --- /.stats ------------------------------------------------------------------------------

def test_stats_counts_calls_hits_and_misses(emulator, mount):
    """/.stats is hidden, read-only, and its counts move with what the mount does."""
    m = mount()
    assert ".stats" not in os.listdir(m.path)
    before = stats(m)
    assert before["api_calls.getRegionList.ok"] == 1  # os.listdir(m.path) above
    assert read(m.path / "KR" / "3135" / "osType") == "UBUNTU\n"
    read(m.path / "KR" / "3135" / "osType")
    assert errno_of(os.stat, m.path / "KR" / "999999") == errno.ENOENT
    after = stats(m)
    assert after["api_calls.getServerImageDetail.ok"] == 1
    assert after["api_calls.getServerImageDetail.4xx"] == 1
    assert after["cache_misses"] >= before["cache_misses"] + 2
    assert after["api_bytes_received"] > before["api_bytes_received"]
    assert after["uptime_seconds"] >= 0 and after["cache_images"] >= 1
    assert os.stat(m.path / ".stats").st_mode & 0o777 == 0o444
    assert errno_of(open, m.path / ".stats", "w") == errno.EROFS


def test_stats_count_retries_and_stale_serves(emulator, mount):
    """Retries and stale answers show in /.stats."""
    m = mount("ttl=1", "stale=60", "retries=1")
    m.allow_log(r"HTTP 503|refresh failed")
    read(m.path / "KR" / "3135" / "osType")
    emulator.fault("503", count=-1)
    time.sleep(1.3)
    assert read(m.path / "KR" / "3135" / "osType") == "UBUNTU\n"
    s = stats(m)
    assert s["api_retries"] >= 1 and s["cache_stale_serves"] >= 1
    assert s["api_calls.getServerImageDetail.5xx"] + s["api_calls.getRegionList.5xx"] >= 1
    emulator.clear_faults()


# --- SIGHUP and the log -------------------------------------------------------------------

def test_sighup_drops_every_cache(emulator, mount):
    """After SIGHUP the next access fetches afresh, though the ttl has not passed."""
    m = mount("ttl=600")
    path = m.path / "KR" / "3135" / "osType"
    assert read(path) == "UBUNTU\n"
    assert "3135" in os.listdir(m.path / "KR")
    emulator.set_field("KR", "3135", ["osType", "code"], "CENTOS")
    emulator.reset()
    assert read(path) == "UBUNTU\n"
    assert sum(emulator.counts()["calls"].values()) == 0
    os.kill(m.proc.pid, signal.SIGHUP)
    assert wait_for(lambda: "SIGHUP" in m.log())
    assert read(path) == "CENTOS\n"
    assert emulator.counts()["calls"]["getServerImageDetail"] == 1


def test_log_to_a_file_and_reopen_on_sighup(emulator, mount, tmp_path):
    """-o log=FILE writes there (not stderr); after a rotation SIGHUP reopens it."""
    log = tmp_path / "ncloudfs.log"
    m = mount("log=%s" % log)
    m.allow_log(r"getServerImageDetail KR/100003: HTTP 503")
    emulator.fault("503", action="getServerImageDetail", count=-1)
    errno_of(read, m.path / "KR" / "100003" / "osType")
    assert wait_for(lambda: log.exists() and "HTTP 503" in log.read_text())
    assert re.search(r"^\S+ ncloudfs\[\d+\]: error: getServerImageDetail KR/100003: HTTP 503",
                     log.read_text(), re.M)
    assert "HTTP 503" not in m.log()
    os.rename(log, tmp_path / "ncloudfs.log.1")
    os.kill(m.proc.pid, signal.SIGHUP)
    assert wait_for(lambda: log.exists() and "SIGHUP" in log.read_text())
    emulator.clear_faults()


def test_a_log_file_that_cannot_be_opened_is_refused(mount):
    """log=/nonexistent/dir/file exits 1 before mounting, naming it and the errno."""
    m = mount("log=/nonexistent/dir/ncloudfs.log", expect_fail=True)
    assert m.returncode != 0
    assert ("ncloudfs: invalid log '/nonexistent/dir/ncloudfs.log': No such file or directory"
            in m.log()), m.log()


def test_a_site_asked_for_beats_the_profiles_gateway(emulator, mount):
    """-o site=gov wins over the profile's ncloud_api_url (here the emulator's)."""
    d = mount.home / ".ncloud"
    d.mkdir()
    (d / "configure").write_text("[DEFAULT]\nncloud_api_url = %s\n" % emulator.url)
    os.chmod(d / "configure", 0o600)
    plain = mount("cafile=" + emulator.cafile, api_opts=False)
    assert read(plain.path / "KR" / "3135" / "osType") == "UBUNTU\n"
    m = mount("site=gov", "timeout=2", "retries=0", "cafile=" + emulator.cafile,
              "delay_connect", api_opts=False)
    m.allow_log(r"getRegionList: .*ncloud\.apigw\.gov-ntruss\.com")
    assert errno_of(os.listdir, m.path) == errno.EIO
    assert "ncloud.apigw.gov-ntruss.com" in m.log()
