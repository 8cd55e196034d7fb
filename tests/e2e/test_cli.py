# SPDX-License-Identifier: MIT
"""The command line end to end: help and version, credentials and their sources, the gateway's
precedence, bad options, signals and unmounting, and how the mount shows in mountinfo."""

import contextlib
import errno
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import emu
from expect import wait_until

DEAD = "https://127.0.0.1:1"  # nothing listens there: using it fails every read
NO_ENV_KEYS = {"NCLOUD_ACCESS_KEY_ID": None, "NCLOUD_SECRET_ACCESS_KEY": None}
ACTIONS = ("getRegionList", "getServerImageList", "getServerImageDetail")
WRONG_ID, WRONG_SECRET = "NCPWRONGACCESSKEY999", "wrong-secret-0000000000"


def run_daemon(*args, env=None):
    """Run ./ncloudfs with args to completion; return the CompletedProcess (text)."""
    env = env if env is not None else {k: v for k, v in os.environ.items()
                                       if not k.startswith("NCLOUD_")}
    return subprocess.run([str(emu.DAEMON), *args], env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=20)


def mountinfo_entry(path):
    """Return (mount options, fstype, source, super options) of the mount at path, or None."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, rest = line.partition(" - ")
            fields, rest = fields.split(), rest.split()
            if emu.OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields[4]) == path:
                return set(fields[5].split(",")), rest[0], rest[1], set(rest[2].split(","))
    return None


def write_config(path, sections):
    """Write an ncloud configure file (mode 0600) from {section: {key: value}}."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join("[%s]\n%s\n" % (name, "".join("%s = %s\n" % kv for kv in keys.items()))
                   for name, keys in sections.items())
    path.write_text(text)
    path.chmod(0o600)
    return path


def keys(emulator, api_url=None):
    """The configure keys of the emulator's key pair (and a gateway, if given)."""
    section = {"ncloud_access_key_id": emulator.access_key,
               "ncloud_secret_access_key": emulator.secret_key}
    if api_url:
        section["ncloud_api_url"] = api_url
    return section


def wrong_keys(api_url=None):
    """Configure keys that the emulator refuses (and a gateway, if given)."""
    section = {"ncloud_access_key_id": WRONG_ID, "ncloud_secret_access_key": WRONG_SECRET}
    if api_url:
        section["ncloud_api_url"] = api_url
    return section


def assert_works(m):
    """The mount answers from the emulator, then unmounts with exit 0."""
    assert sorted(os.listdir(m.path)) == ["JPN", "KR", "SGN"]
    with open(m.path / "KR" / "3135" / "osType") as f:
        assert f.read() == "UBUNTU\n"
    assert m.unmount() == 0


def assert_refused(m, emulator, *words):
    """The daemon exited non-zero without mounting or calling the API; its message has words."""
    assert m.returncode not in (None, 0), m.log()
    assert not emu.mountinfo_has(m.path)
    assert emulator.counts()["calls"] == dict.fromkeys(ACTIONS, 0)
    for word in words:
        assert word in m.log(), (word, m.log())


# --- help and version ---------------------------------------------------------

@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_option_and_variable(flag):
    """--help exits 0 and names every ncloudfs option and environment variable."""
    done = run_daemon(flag)
    assert done.returncode == 0, done
    for word in ("ttl=", "negative_ttl=", "timeout=", "api_url=", "cafile=", "profile=",
                 "config=", "max_threads=", "allow_other",
                 "NCLOUD_ACCESS_KEY_ID", "NCLOUD_SECRET_ACCESS_KEY", "NCLOUD_ACCESS_KEY",
                 "NCLOUD_SECRET_KEY", "NCLOUD_API_GW", "NCLOUD_PROFILE", "MOUNTPOINT"):
        end = "" if word.endswith("=") else r"(?!\w)"  # NCLOUD_ACCESS_KEY is not ..._KEY_ID
        assert re.search(r"\b" + re.escape(word) + end, done.stdout), word


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version(flag):
    """--version exits 0 and prints ncloudfs's version."""
    done = run_daemon(flag)
    assert done.returncode == 0, done
    assert re.search(r"ncloudfs \S*\d+\.\d+", done.stdout), done.stdout


# --- credentials ----------------------------------------------------------------

def test_no_credentials_refuses_and_says_where_it_looked(emulator, mount):
    """With no keys anywhere ncloudfs exits 1 unmounted, naming the variables and the file."""
    m = mount(env=NO_ENV_KEYS, expect_fail=True)
    assert m.returncode == 1
    assert_refused(m, emulator, "NCLOUD_ACCESS_KEY_ID", "NCLOUD_SECRET_ACCESS_KEY",
                   str(mount.home / ".ncloud" / "configure"))


@pytest.mark.parametrize("present", ["NCLOUD_ACCESS_KEY_ID", "NCLOUD_SECRET_ACCESS_KEY"])
def test_half_a_key_pair_refuses(emulator, mount, present):
    """One key without the other refuses to mount and says which one is missing."""
    env = dict(NO_ENV_KEYS)
    env[present] = emulator.access_key if present.endswith("KEY_ID") else emulator.secret_key
    m = mount(env=env, expect_fail=True)
    missing = "secret key" if present.endswith("KEY_ID") else "access key"
    assert_refused(m, emulator, missing, str(mount.home / ".ncloud" / "configure"))


def test_keys_from_configure_default_section(emulator, mount):
    """Keys come from ~/.ncloud/configure [DEFAULT] when the environment has none."""
    write_config(mount.home / ".ncloud" / "configure", {"DEFAULT": keys(emulator)})
    assert_works(mount(env=NO_ENV_KEYS))


def test_profile_option_selects_a_section(emulator, mount):
    """-o profile=NAME takes keys and gateway from [NAME], not [DEFAULT] nor $NCLOUD_PROFILE."""
    write_config(mount.home / ".ncloud" / "configure",
                 {"DEFAULT": wrong_keys(DEAD), "other": wrong_keys(DEAD),
                  "work": keys(emulator, emulator.url)})
    env = dict(NO_ENV_KEYS, NCLOUD_PROFILE="other")
    assert_works(mount("profile=work", "cafile=" + emulator.cafile, env=env, api_opts=False))


def test_profile_from_environment_selects_a_section(emulator, mount):
    """NCLOUD_PROFILE=NAME takes keys and gateway from [NAME]."""
    write_config(mount.home / ".ncloud" / "configure",
                 {"DEFAULT": wrong_keys(DEAD), "work": keys(emulator, emulator.url)})
    env = dict(NO_ENV_KEYS, NCLOUD_PROFILE="work")
    assert_works(mount("cafile=" + emulator.cafile, env=env, api_opts=False))


def test_wrong_default_section_is_really_used(emulator, mount):
    """Control for the profile tests: [DEFAULT]'s wrong keys do reach the API and fail."""
    write_config(mount.home / ".ncloud" / "configure",
                 {"DEFAULT": wrong_keys(), "work": keys(emulator)})
    m = mount(env=NO_ENV_KEYS, expect_fail=True)
    log = m.log()
    assert m.returncode == 1 and "Authentication Failed" in log, log
    assert "the keys came from %s [DEFAULT]" % (mount.home / ".ncloud" / "configure") in log
    assert WRONG_SECRET not in log


def test_config_option_selects_another_file(emulator, mount, tmp_path):
    """-o config=PATH reads keys from PATH instead of ~/.ncloud/configure."""
    write_config(mount.home / ".ncloud" / "configure", {"DEFAULT": wrong_keys()})
    other = write_config(tmp_path / "elsewhere" / "creds.ini", {"DEFAULT": keys(emulator)})
    assert_works(mount("config=" + str(other), env=NO_ENV_KEYS))


@pytest.mark.parametrize("how", ["option", "environment"])
def test_missing_profile_refuses_naming_it(emulator, mount, how):
    """A profile that the file lacks refuses to mount, with a message naming it."""
    path = write_config(mount.home / ".ncloud" / "configure", {"DEFAULT": keys(emulator)})
    if how == "option":
        m = mount("profile=nosuchprofile", env=NO_ENV_KEYS, expect_fail=True)
    else:
        m = mount(env=dict(NO_ENV_KEYS, NCLOUD_PROFILE="nosuchprofile"), expect_fail=True)
    assert_refused(m, emulator, "nosuchprofile", str(path))


def test_fallback_environment_names(emulator, mount):
    """NCLOUD_ACCESS_KEY / NCLOUD_SECRET_KEY are used when the primary names are unset."""
    env = dict(NO_ENV_KEYS, NCLOUD_ACCESS_KEY=emulator.access_key,
               NCLOUD_SECRET_KEY=emulator.secret_key)
    assert_works(mount(env=env))


def test_primary_environment_names_win(emulator, mount):
    """NCLOUD_ACCESS_KEY_ID / NCLOUD_SECRET_ACCESS_KEY beat the fallback names and the file."""
    write_config(mount.home / ".ncloud" / "configure", {"DEFAULT": wrong_keys()})
    env = {"NCLOUD_ACCESS_KEY": WRONG_ID, "NCLOUD_SECRET_KEY": WRONG_SECRET}
    assert_works(mount(env=env))


# --- the gateway ------------------------------------------------------------------

def test_api_url_option_beats_environment_and_profile(emulator, mount):
    """-o api_url wins over NCLOUD_API_GW and the profile's ncloud_api_url."""
    write_config(mount.home / ".ncloud" / "configure", {"DEFAULT": {"ncloud_api_url": DEAD}})
    assert_works(mount(env={"NCLOUD_API_GW": DEAD}))


def test_environment_gateway_beats_profile(emulator, mount):
    """NCLOUD_API_GW wins over the profile's ncloud_api_url."""
    write_config(mount.home / ".ncloud" / "configure", {"DEFAULT": {"ncloud_api_url": DEAD}})
    assert_works(mount("cafile=" + emulator.cafile, env={"NCLOUD_API_GW": emulator.url},
                       api_opts=False))


def test_profile_gateway_is_used_last(emulator, mount):
    """With no option and no NCLOUD_API_GW, the profile's ncloud_api_url is the gateway."""
    write_config(mount.home / ".ncloud" / "configure",
                 {"DEFAULT": {"ncloud_api_url": emulator.url}})
    assert_works(mount("cafile=" + emulator.cafile, api_opts=False))


def wait_logged_mounted(m):
    """The mount shows in mountinfo a moment before the daemon logs it: wait for the line."""
    wait_until(lambda: "info: mounted " in m.log(), "the daemon's 'mounted' line")


def test_log_names_the_gateway_from_the_profile(emulator, mount):
    """The mount's log line names the gateway taken from the profile (not freed memory)."""
    write_config(mount.home / ".ncloud" / "configure",
                 {"DEFAULT": {"ncloud_api_url": emulator.url}})
    m = mount("cafile=" + emulator.cafile, api_opts=False)
    wait_logged_mounted(m)
    assert "(API %s," % emulator.url in m.log(), m.log()
    assert m.unmount() == 0


def test_default_gateway_when_none_is_given(emulator, mount):
    """With no gateway anywhere, the daemon uses NCP's public one (not contacted here:
    delay_connect)."""
    m = mount("delay_connect", api_opts=False)
    wait_logged_mounted(m)
    assert "https://ncloud.apigw.ntruss.com" in m.log()
    assert emulator.url not in m.log()
    assert m.unmount() == 0


# --- bad command lines --------------------------------------------------------------

SECONDS_0 = "expected a number of seconds (0 or more)"
SECONDS_ABOVE_0 = "expected a number of seconds above 0"
THREADS = "expected a whole number from 1 to 1024"


@pytest.mark.parametrize("option, words", [
    ("ttl=abc", ["ncloudfs: invalid ttl 'abc': " + SECONDS_0]),
    ("ttl=-1", ["ncloudfs: invalid ttl '-1': " + SECONDS_0]),
    ("ttl=", ["ncloudfs: invalid ttl '': " + SECONDS_0]),
    ("timeout=0", ["ncloudfs: invalid timeout '0': " + SECONDS_ABOVE_0]),
    ("timeout=-5", ["ncloudfs: invalid timeout '-5': " + SECONDS_ABOVE_0]),
    ("negative_ttl=x", ["ncloudfs: invalid negative_ttl 'x': " + SECONDS_0]),
    ("max_threads=0", ["ncloudfs: invalid max_threads '0': " + THREADS]),
    ("max_threads=many", ["ncloudfs: invalid max_threads 'many': " + THREADS]),
    ("cafile=/nonexistent/ca.pem",
     ["ncloudfs: cannot read cafile '/nonexistent/ca.pem': No such file or directory"]),
    ("nosuchoption", ["unknown option", "nosuchoption"]),
])
def test_bad_option_refuses_before_mounting(emulator, mount, option, words):
    """A bad option value exits non-zero before mounting, with a message naming it."""
    m = mount(option, expect_fail=True)
    assert_refused(m, emulator, *words)


def test_no_mountpoint_refuses():
    """Without a mountpoint ncloudfs exits non-zero and says so."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NCLOUD_")}
    env.update(NCLOUD_ACCESS_KEY_ID="x", NCLOUD_SECRET_ACCESS_KEY="y")
    done = run_daemon("-f", "-o", "api_url=" + DEAD, env=env)
    assert done.returncode != 0
    assert "ncloudfs: no mountpoint given" in done.stderr, done


def test_missing_mountpoint_directory_refuses(emulator, mount, tmp_path):
    """A mountpoint that does not exist exits non-zero, naming it and the errno."""
    env = emu.daemon_env(emulator, mount.home)
    missing = tmp_path / "no" / "such" / "dir"
    done = run_daemon("-f", "-o", "api_url=" + emulator.url + ",cafile=" + emulator.cafile,
                      str(missing), env=env)
    assert done.returncode != 0, done
    assert "bad mount point" in done.stderr and str(missing) in done.stderr, done
    assert "No such file or directory" in done.stderr, done


# --- unmounting --------------------------------------------------------------------

@contextlib.contextmanager
def signals_not_ignored(*sigs):
    """Let children start with sigs at their default (a shell's background job ignores SIGINT)."""
    old = {sig: signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT
                              else signal.SIG_DFL) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_cleanly(emulator, mount, sig):
    """SIGTERM or SIGINT unmounts and the daemon exits 0."""
    with signals_not_ignored(sig):
        m = mount()
    assert sorted(os.listdir(m.path)) == ["JPN", "KR", "SGN"]
    m.proc.send_signal(sig)
    assert m.proc.wait(10) == 0
    assert mountinfo_entry(m.path) is None
    assert m.unmount() == 0


def test_fusermount_unmounts_cleanly(emulator, mount):
    """fusermount3 -u succeeds and the daemon exits 0."""
    m = mount()
    with open(m.path / "KR" / "3135" / "osType") as f:
        assert f.read() == "UBUNTU\n"
    assert subprocess.run(["fusermount3", "-u", str(m.path)], timeout=10).returncode == 0
    assert m.proc.wait(10) == 0
    assert mountinfo_entry(m.path) is None
    assert m.unmount() == 0


# --- mountinfo ---------------------------------------------------------------------

def test_mount_is_fuse_ncloudfs_and_read_only(emulator, mount):
    """The mount shows as fuse.ncloudfs, source ncloudfs, read-only, without allow_other."""
    m = mount()
    opts, fstype, source, super_opts = mountinfo_entry(m.path)
    assert fstype == "fuse.ncloudfs"
    assert source == "ncloudfs"
    assert "ro" in opts and "rw" not in opts
    assert "allow_other" not in super_opts
    assert m.unmount() == 0


def test_rw_option_still_mounts_read_only(emulator, mount):
    """Asking for -o rw still gives a read-only mount."""
    m = mount("rw")
    opts, _, _, _ = mountinfo_entry(m.path)
    assert "ro" in opts and "rw" not in opts
    assert m.unmount() == 0


def test_allow_other_shows_in_mountinfo(emulator, mount):
    """-o allow_other mounts (as root) and shows in the mount's options."""
    m = mount("allow_other")
    opts, fstype, _, super_opts = mountinfo_entry(m.path)
    assert fstype == "fuse.ncloudfs"
    assert "allow_other" in super_opts
    assert "ro" in opts
    assert_works(m)


# --- dead mounts ------------------------------------------------------------------

def mounts_at(path):
    """How many mounts /proc/self/mountinfo shows at path."""
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return sum(emu.OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)),
                                        line.split()[4]) == path for line in f)


def watchdogs(daemon_pid):
    """The daemon's watchdog processes (forked by the daemon, named like it)."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines()
                          if ":\t" in line)
        except OSError:
            continue
        if fields.get("Name") == "ncloudfs" and fields.get("PPid") == str(daemon_pid):
            found.append(int(status.parent.name))
    return found


def ended(pid):
    """Whether a process (not ours to reap) has ended: gone, or a zombie."""
    try:
        stat = Path("/proc/%d/stat" % pid).read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_gone(pid, seconds=30):
    """Wait (bounded) for a process to end; tell whether it did."""
    deadline = time.monotonic() + seconds
    while not ended(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    return ended(pid)


def assert_unmounted_by_watchdog(path, dog=None):
    """After a kill -9 of the daemon: its watchdog unmounts path (a deadline-bounded wait;
    slow under sanitizers and a busy machine) and then ends."""
    wait_until(lambda: not mounts_at(path), "the watchdog to unmount the dead daemon's mount",
               30)
    if dog is not None:
        assert wait_gone(dog), "the watchdog outlived its daemon"


def test_killed_daemon_takes_its_mount_with_it(emulator, mount):
    """auto_unmount (the default): after kill -9 the mount is gone, not left dead, even
    with the root's attributes in the kernel's cache (a walk just before the kill)."""
    m = mount()
    assert sorted(os.listdir(m.path)) == ["JPN", "KR", "SGN"]
    os.stat(m.path / "KR")
    m.kill()
    assert_unmounted_by_watchdog(m.path)
    assert os.listdir(m.path) == []
    deadline = time.monotonic() + 10
    while "the daemon died; unmounted its mount" not in m.log():
        assert time.monotonic() < deadline, m.log()
        time.sleep(0.05)


def test_watchdog_with_standard_descriptors_closed(emulator, tmp_path):
    """Started with stdin, stdout and stderr closed (as some supervisors do), the daemon
    still mounts, and its watchdog still takes the mount with it after kill -9 (the pipe to
    it must not land on descriptor 0, 1 or 2)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (tmp_path / "home").mkdir()
    args = emu.daemon_args(emulator, ())  # -f
    env = emu.daemon_env(emulator, tmp_path / "home")
    cmd = " ".join(shlex.quote(a) for a in [str(emu.DAEMON), *args, str(mnt)])
    proc = subprocess.Popen(["sh", "-c", "exec %s <&- >&- 2>&-" % cmd], env=env,
                            start_new_session=True)
    try:
        wait_until(lambda: mounts_at(mnt) or proc.poll() is not None, "the mount",
                   emu.START_TIMEOUT)
        assert proc.poll() is None, "the daemon exited with %s" % proc.returncode
        assert sorted(os.listdir(mnt)) == ["JPN", "KR", "SGN"]
        dogs = watchdogs(proc.pid)
        assert len(dogs) == 1, dogs
        proc.kill()
        proc.wait(timeout=30)
        assert_unmounted_by_watchdog(mnt, dogs[0])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        if mounts_at(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)


def test_watchdog_holds_nothing_of_the_daemon(emulator, mount):
    """The watchdog: one per mount (none with noauto_unmount), holding no descriptor of the
    daemon's (/dev/fuse would keep a dead connection alive) and no secret; it ends with a
    clean unmount and leaves the mount alone."""
    m = mount()
    dogs = watchdogs(m.daemon.proc.pid)
    assert len(dogs) == 1, dogs
    dog = dogs[0]
    targets = sorted(os.readlink(fd) for fd in Path("/proc/%d/fd" % dog).iterdir())
    stderr = os.readlink("/proc/%d/fd/2" % m.daemon.proc.pid)  # in the foreground: the same
    assert all(t in ("/dev/null", stderr) or t.startswith("pipe:") for t in targets), targets
    assert sum(t.startswith("pipe:") for t in targets) == 1, targets
    assert emulator.secret_key.encode() not in Path("/proc/%d/environ" % dog).read_bytes()
    assert m.unmount() == 0
    assert wait_gone(dog), "the watchdog outlived a clean unmount"
    assert "unmounted its mount" not in m.log()
    quiet = mount("noauto_unmount")
    assert watchdogs(quiet.daemon.proc.pid) == []


def test_mounting_over_a_dead_mount_recovers(emulator, mount, tmp_path):
    """With noauto_unmount a killed daemon leaves a dead mount ("Transport endpoint is not
    connected"); mounting there again (named with a trailing slash) unmounts it, says so and
    mounts once, no manual step."""
    m = mount("noauto_unmount")
    assert sorted(os.listdir(m.path)) == ["JPN", "KR", "SGN"]
    m.kill()
    with pytest.raises(OSError) as dead:
        os.statvfs(m.path)  # a stat may be answered from the kernel's cache
    assert dead.value.errno == errno.ENOTCONN
    again = emu.Daemon(m.path, emu.daemon_args(emulator, ()),
                       emu.daemon_env(emulator, mount.home, None), tmp_path / "again.log")
    try:
        with open(again.log_path, "wb") as log:  # Daemon.start would mkdir the dead mount
            again.proc = subprocess.Popen([str(emu.DAEMON), *again.args, str(m.path) + "/"],
                                          env=again.env, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        # the dead mount is in mountinfo too: wait for the new daemon to say it mounted
        deadline = time.monotonic() + emu.START_TIMEOUT
        while "info: mounted" not in again.log() and again.proc.poll() is None:
            assert time.monotonic() < deadline, "no mount:\n" + again.log()
            time.sleep(0.05)
        assert again.proc.poll() is None, again.log()
        assert sorted(os.listdir(m.path)) == ["JPN", "KR", "SGN"]
        assert mounts_at(m.path) == 1
        assert "the ncloudfs mounted there had died; unmounted it" in again.log()
    finally:
        assert again.unmount() == 0


# --- hardening ---------------------------------------------------------------------

NO_PTRACE = ["setpriv", "--inh-caps=-sys_ptrace", "--bounding-set=-sys_ptrace"]


def open_memory_without_ptrace(pid):
    """Open /proc/PID/mem as root without CAP_SYS_PTRACE: (exit code, stderr)."""
    r = subprocess.run([*NO_PTRACE, sys.executable, "-c",
                        "open('/proc/%d/mem', 'rb').close()" % pid],
                       capture_output=True, text=True, timeout=10)
    return r.returncode, r.stderr


def test_daemon_is_not_dumpable(emulator, mount, tmp_path, monkeypatch):
    """Holding the secret, the daemon is non-dumpable: a process of the same user and the
    same capabilities cannot open its memory. With -d it stays dumpable."""
    # The daemon runs without CAP_SYS_PTRACE too, so that only dumpability decides.
    wrapper = tmp_path / "ncloudfs-no-ptrace"
    wrapper.write_text("#!/bin/sh\nexec %s %s \"$@\"\n" % (" ".join(NO_PTRACE), emu.DAEMON))
    wrapper.chmod(0o755)
    monkeypatch.setattr(emu, "DAEMON", wrapper)
    m = mount()
    code, err = open_memory_without_ptrace(m.proc.pid)
    assert code != 0 and "Permission denied" in err, (code, err)
    assert_works(m)
    # The check above can fail: a dumpable daemon's memory opens.
    d = mount("-d")
    code, err = open_memory_without_ptrace(d.proc.pid)
    assert code == 0, err
    assert d.unmount() == 0


def test_daemonized_mount_returns_and_its_watchdog_unmounts(emulator, tmp_path):
    """Without -f: the command returns with its output closed (the watchdog keeps no pipe of
    the caller's open), and a kill -9 of the daemon still takes the mount with it."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (tmp_path / "home").mkdir()
    args = emu.daemon_args(emulator, ())[1:]  # no -f
    env = emu.daemon_env(emulator, tmp_path / "home")
    daemon, others = None, []
    try:
        done = subprocess.run([str(emu.DAEMON), *args, str(mnt)], env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert sorted(os.listdir(mnt)) == ["JPN", "KR", "SGN"]
        for fds in Path("/proc").glob("[0-9]*/fd"):
            try:
                if str(mnt) not in Path(fds.parent, "cmdline").read_text() or \
                        Path(fds.parent, "comm").read_text().strip() != "ncloudfs":
                    continue
                if any(os.readlink(fd) == "/dev/fuse" for fd in fds.iterdir()):
                    daemon = int(fds.parent.name)
                else:
                    others.append(int(fds.parent.name))
            except OSError:
                continue
        assert daemon, "no daemon holds /dev/fuse for the mount"
        assert len(others) == 1, others  # the watchdog, forked before daemonizing
        os.stat(mnt / "KR")
        os.kill(daemon, signal.SIGKILL)
        assert_unmounted_by_watchdog(mnt, others[0])
    finally:
        for pid in others:
            if Path("/proc/%d" % pid).exists():
                os.kill(pid, signal.SIGKILL)
        if daemon and Path("/proc/%d" % daemon).exists():
            os.kill(daemon, signal.SIGKILL)
        if mounts_at(mnt):
            subprocess.run(["fusermount3", "-u", "-z", str(mnt)], check=False)
