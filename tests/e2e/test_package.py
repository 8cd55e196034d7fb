# SPDX-License-Identifier: MIT
"""The packages: `make deb` installed system-wide, then ncloudfs mounted through mount(8) and
an fstab line the way boot does it, then removed; and `make rpm`.

These install and remove a package and mount as root, so they run only as root with CI=true
(locally: `CI=true /usr/bin/python3 -m pytest -q tests/e2e/test_package.py` as root), and
not in the sanitizer pass of `make check` (the package is built without sanitizers). The
package is always removed and every mount undone, even when a test fails.
"""

import contextlib
import fnmatch
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

import emu

MAKEFLAGS = os.environ.get("MAKEFLAGS", "")
SANITIZED = re.search(r"(?:^|\s)SANITIZE=\S", MAKEFLAGS) or os.environ.get("SANITIZE")
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or os.environ.get("CI") != "true",
                       reason="installs a package and mounts through mount(8): runs as root "
                              "with CI=true only"),
    pytest.mark.skipif(bool(SANITIZED), reason="the package is built without sanitizers: "
                                               "`make check` without SANITIZE tests it"),
]

REPO = emu.REPO
BINARY = Path("/usr/bin/ncloudfs")
DOC = Path("/usr/share/doc/ncloudfs")
MAN = "/usr/share/man/man1/ncloudfs.1.gz"
MAKE_TIMEOUT = 600
STEP_TIMEOUT = 30


def run(*cmd, env=None, timeout=STEP_TIMEOUT, check=True, cwd=None):
    """Run cmd to completion (text output); fail with its output when check and it fails."""
    proc = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail("%s exited %d:\n%s%s" % (" ".join(map(str, cmd)), proc.returncode,
                                             proc.stdout, proc.stderr), pytrace=False)
    return proc


def build_env():
    """The environment for `make deb` and `make rpm`: nothing from the make running pytest."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "SANITIZE")}
    env["DEBIAN_FRONTEND"] = "noninteractive"
    return env


def makefile_version():
    """The Makefile's VERSION."""
    return re.search(r"^VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.M).group(1)


def installed():
    """Tell whether dpkg has ncloudfs installed (or half-installed)."""
    proc = run("dpkg-query", "-W", "-f=${Status}", "ncloudfs", check=False)
    return proc.returncode == 0 and "not-installed" not in proc.stdout \
        and "config-files" not in proc.stdout


def remove_package():
    """apt-get remove ncloudfs; return the CompletedProcess."""
    return run("apt-get", "remove", "-y", "ncloudfs", env=build_env(), timeout=120,
               check=False)


@pytest.fixture(scope="module")
def package():
    """Build the .deb with `make deb` from the current tree and install it; removed at the end."""
    if installed():
        pytest.skip("ncloudfs is already installed: `apt-get remove ncloudfs` first")
    made = run("make", "-s", "deb", env=build_env(), cwd=REPO, timeout=MAKE_TIMEOUT)
    deb = re.findall(r"^deb: (dist/\S+\.deb)$", made.stdout, re.M)
    assert deb, "make deb did not name its package:\n" + made.stdout
    deb = REPO / deb[-1]
    try:
        run("apt-get", "install", "-y", "--no-install-recommends", deb, env=build_env(),
            timeout=300)
        yield deb
    finally:
        if installed():
            remove_package()


def dpkg_filtered(path):
    """Tell whether dpkg's path-exclude (as in slim Docker images) keeps path off the disk."""
    verdict = False
    for cfg in [Path("/etc/dpkg/dpkg.cfg"), *sorted(Path("/etc/dpkg/dpkg.cfg.d").glob("*"))]:
        with contextlib.suppress(OSError):
            for line in cfg.read_text().splitlines():
                word, _, pattern = line.strip().partition(" ")
                if word in ("path-exclude", "path-include") and fnmatch.fnmatch(path, pattern):
                    verdict = word == "path-exclude"
    return verdict


def default_path_lookup():
    """Where a shell with no PATH finds ncloudfs, as mount.fuse3's /bin/sh does."""
    return run("env", "-i", "/bin/sh", "-c", "command -v ncloudfs", check=False).stdout.strip()


def mounted(path):
    """Tell whether a fuse.ncloudfs mount is at path."""
    return emu.mountinfo_has(path)


def daemons_on(path):
    """PIDs of processes whose command line names path (the daemons serving it)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError):
                args = (d / "cmdline").read_bytes().split(b"\0")
                if args and os.path.basename(args[0]) == b"ncloudfs" and \
                        str(path).encode() in args:
                    pids.append(int(d.name))
    return pids


def wait_daemons_gone(path, timeout=emu.STOP_TIMEOUT):
    """Wait for the daemons on path to exit after an unmount; return those left."""
    deadline = time.monotonic() + timeout
    while daemons_on(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return daemons_on(path)


@contextlib.contextmanager
def mount_cleanup(path):
    """Undo a mount at path whatever happens: umount (lazily if need be), stop its daemon."""
    try:
        yield
    finally:
        if mounted(path):
            if run("umount", path, check=False).returncode != 0:
                run("umount", "-l", path, check=False)
        for pid in wait_daemons_gone(path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)


def mount_env(extra=None):
    """mount(8)'s environment: no NCLOUD_* from outside, plus extra."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NCLOUD_")}
    env.update(extra or {})
    return env


def fstab_escape(s):
    """Escape a field of an fstab line (spaces, tabs, backslashes as octal)."""
    return "".join("\\%03o" % ord(c) if c in " \t\n\\" else c for c in s)


def write_credentials(path, emulator):
    """Write a credentials file (mode 600) with the emulator's keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("[DEFAULT]\nncloud_access_key_id = %s\nncloud_secret_access_key = %s\n"
                % (emulator.access_key, emulator.secret_key))
    return path


def check_mount(path, log):
    """The mount is live, a file reads right, umount ends it and its daemon exits cleanly."""
    def show_log():
        return log.read_text(errors="replace") if log.exists() else "(no log)"

    assert mounted(path), "mount returned 0 but nothing is mounted; log:\n" + show_log()
    assert (path / "KR" / "3135" / "osType").read_text() == "UBUNTU\n", show_log()
    run("umount", path)
    assert not mounted(path)
    assert not wait_daemons_gone(path), "ncloudfs still runs after umount; log:\n" + show_log()
    problems = [line for line in show_log().splitlines()
                if re.search(r"error|warning", line, re.I)]
    assert not problems, "the daemon logged problems:\n" + show_log()


def test_installed_files(package):
    """The package installs the binary, the man page, the README and the systemd examples
    (checked in the .deb instead where dpkg's path-exclude keeps docs off the disk)."""
    assert BINARY.is_file() and os.access(BINARY, os.X_OK)
    version = run(BINARY, "--version").stdout
    assert version.startswith("ncloudfs %s " % makefile_version()), version
    assert default_path_lookup() == str(BINARY), \
        "mount.fuse3 would run %r, not %s" % (default_path_lookup(), BINARY)
    contents = run("dpkg-deb", "-c", package).stdout
    docs = [MAN, str(DOC / "README.md.gz"), str(DOC / "copyright"),
            str(DOC / "examples" / "mnt-ncp.mount"), str(DOC / "examples" / "ncloudfs@.service")]
    for path in docs:
        assert " ./" + path.lstrip("/") + "\n" in contents + "\n", path + " not in the .deb"
        assert dpkg_filtered(path) or Path(path).is_file(), path + " not installed"
    if not dpkg_filtered(MAN):
        assert run("man", "-w", "ncloudfs").stdout.strip() == MAN
    status = run("dpkg-query", "-W", "-f=${Version} ${Depends}", "ncloudfs").stdout
    assert status.startswith(makefile_version() + "-") and "fuse3" in status, status


def test_lintian(package):
    """lintian finds no error in the .deb (warnings are printed, not failed on)."""
    proc = run("lintian", "--fail-on", "error", package, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    print(proc.stdout)


def test_mount_command(package, emulator, tmp_path):
    """`mount -t fuse.ncloudfs ncloudfs MNT -o ...` mounts through mount.fuse3, with the keys
    from the environment (mount(8) and mount.fuse3 pass NCLOUD_* on)."""
    mnt, log = tmp_path / "mnt", tmp_path / "ncloudfs.log"
    mnt.mkdir()
    opts = "api_url=%s,cafile=%s,ttl=120,log=%s" % (emulator.url, emulator.cafile, log)
    env = mount_env({"NCLOUD_ACCESS_KEY_ID": emulator.access_key,
                     "NCLOUD_SECRET_ACCESS_KEY": emulator.secret_key})
    with mount_cleanup(mnt):
        run("mount", "-t", "fuse.ncloudfs", "ncloudfs", mnt, "-o", opts, env=env)
        check_mount(mnt, log)


def test_fstab_line(package, emulator, tmp_path):
    """An fstab line, as boot mounts it (`mount -T FILE MNT`), with the keys in a credentials
    file named by config= (mount(8) drops HOME, mount.fuse3 sets HOME=/root)."""
    mnt, log = tmp_path / "mnt", tmp_path / "ncloudfs.log"
    mnt.mkdir()
    creds = write_credentials(tmp_path / "ncloud" / "configure", emulator)
    opts = "_netdev,noauto,api_url=%s,cafile=%s,config=%s,ttl=120,log=%s" % (
        emulator.url, emulator.cafile, creds, log)
    fstab = tmp_path / "fstab"
    fstab.write_text("# ncloudfs, as in /etc/fstab\n%s %s fuse.ncloudfs %s 0 0\n"
                     % ("ncloudfs", fstab_escape(str(mnt)), fstab_escape(opts)))
    with mount_cleanup(mnt):
        run("mount", "-T", fstab, mnt, env=mount_env())
        check_mount(mnt, log)


def test_remove(package):
    """apt-get remove takes the binary away (last: the other tests need the package)."""
    proc = remove_package()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not installed()
    assert not BINARY.exists()
    assert not Path(MAN).exists()


@pytest.mark.skipif(not shutil.which("rpmbuild"), reason="rpmbuild is missing (Debian: rpm)")
def test_rpm():
    """`make rpm` builds an RPM holding the binary, man page, README and systemd examples."""
    made = run("make", "-s", "rpm", env=build_env(), cwd=REPO, timeout=MAKE_TIMEOUT)
    rpms = re.findall(r"^rpm: (dist/\S+\.rpm)$", made.stdout, re.M)
    assert rpms, "make rpm did not name its package:\n" + made.stdout
    rpm = REPO / rpms[-1]
    files = run("rpm", "-qlp", rpm).stdout.split()
    assert "/usr/bin/ncloudfs" in files
    assert any(re.fullmatch(r"/usr/share/man/man1/ncloudfs\.1(\.gz)?", f) for f in files)
    for name in ("README.md", "examples/mnt-ncp.mount", "examples/ncloudfs@.service"):
        assert any(f.startswith("/usr/share/doc/") and f.endswith("/" + name) for f in files), \
            name
    assert run("rpm", "-qp", "--qf", "%{VERSION}", rpm).stdout == makefile_version()
    assert "fuse3" in run("rpm", "-qp", "--requires", rpm).stdout.split()
