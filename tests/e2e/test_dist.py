# SPDX-License-Identifier: MIT
"""The release tarball, as automake's distcheck checks it: `make dist`, then in the unpacked
tarball (no git) the daemon builds and passes the unit tests, installs, packages as .deb and
.rpm, and makes the same tarball again.

The builds are plain ones whatever SANITIZE says, so this runs in the plain pass of
`make check` only.
"""

import os
import re
import shutil
import subprocess
import tarfile

import pytest

import emu

MAKEFLAGS = os.environ.get("MAKEFLAGS", "")
SANITIZED = re.search(r"(?:^|\s)SANITIZE=\S", MAKEFLAGS) or os.environ.get("SANITIZE")
pytestmark = pytest.mark.skipif(bool(SANITIZED), reason="builds without sanitizers: the plain "
                                                        "`make check` runs it")
MAKE_TIMEOUT = 600


def version():
    """The Makefile's VERSION."""
    return re.search(r"^VERSION := (\S+)$", (emu.REPO / "Makefile").read_text(), re.M).group(1)


def make(cwd, *targets):
    """Run make in cwd with none of the calling make's variables; fail with its output."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "SANITIZE")}
    proc = subprocess.run(["make", "-j2", *targets], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=MAKE_TIMEOUT, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, "make %s in %s exited %d:\n%s%s" % (
        " ".join(targets), cwd, proc.returncode, proc.stdout[-4000:], proc.stderr[-4000:])
    return proc.stdout


@pytest.fixture
def tarball(tmp_path):
    """`make dist` in a copy of the checkout (the tree stays clean): the tarball's path."""
    copy = tmp_path / "checkout"
    if (emu.REPO / ".git").exists():
        subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(emu.REPO), str(copy)],
                       check=True, timeout=60)
        # what is not committed yet is part of the sources too, as for `make deb`
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], cwd=emu.REPO, capture_output=True,
                                check=True).stdout.decode().split("\0")
    else:  # an unpacked tarball: its MANIFEST says what the sources are
        listed = (emu.REPO / "MANIFEST").read_text().split("\n") + ["MANIFEST"]
    for name in filter(None, listed):
        if (emu.REPO / name).is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(emu.REPO / name, copy / name)
    out = make(copy, "dist")
    path = copy / "dist" / ("ncloudfs-%s.tar.gz" % version())
    assert "dist: dist/ncloudfs-%s.tar.gz" % version() in out
    return path


def test_tarball_builds_tests_installs_and_packages_without_git(tarball, tmp_path):
    """Everything needed is in the tarball: sources, man page, tests, packaging, LICENSE."""
    name = "ncloudfs-%s" % version()
    with tarfile.open(tarball) as t:
        members = t.getnames()
        t.extractall(tmp_path / "unpacked")
    src = tmp_path / "unpacked" / name
    assert all(m == name or m.startswith(name + "/") for m in members)
    for needed in ("Makefile", "README.md", "LICENSE", "ncloudfs.1", "MANIFEST",
                   "fs/main.c", "client/ncp.c", "tests/unit/test_cache.c",
                   "tests/emulator/ncp_emulator.py", "tests/e2e/conftest.py",
                   "packaging/debian/control", "packaging/rpm/ncloudfs.spec",
                   "packaging/build-deps.txt"):
        assert (src / needed).is_file(), "%s is not in the tarball" % needed
    assert not (src / ".git").exists()
    assert not any(m.endswith(".o") or m.endswith("/ncloudfs") for m in members)

    make(src, "ncloudfs")
    done = subprocess.run([str(src / "ncloudfs"), "--version"], capture_output=True,
                          text=True, timeout=10)
    assert done.returncode == 0 and done.stdout.startswith("ncloudfs %s " % version())
    assert "0 failed" in make(src, "unit")
    make(src, "install", "DESTDIR=%s" % (tmp_path / "root"), "PREFIX=/usr")
    assert (tmp_path / "root/usr/bin/ncloudfs").is_file()
    assert (tmp_path / "root/usr/share/man/man1/ncloudfs.1").is_file()

    # and again from the unpacked tarball: the same files
    again = make(src, "dist")
    assert "dist: dist/%s.tar.gz" % name in again
    with tarfile.open(src / "dist" / (name + ".tar.gz")) as t:
        assert sorted(t.getnames()) == sorted(members)


@pytest.mark.skipif(os.geteuid() != 0 or os.environ.get("CI") != "true",
                    reason="builds the .deb and .rpm (minutes): as root with CI=true only")
def test_tarball_makes_deb_and_rpm_without_git(tarball, tmp_path):
    """`make deb` and `make rpm` work in the unpacked tarball, with no git checkout."""
    with tarfile.open(tarball) as t:
        t.extractall(tmp_path / "unpacked")
    src = tmp_path / "unpacked" / ("ncloudfs-%s" % version())
    assert "deb: dist/ncloudfs_%s-" % version() in make(src, "deb")
    assert "rpm: dist/ncloudfs-%s-" % version() in make(src, "rpm")
    assert list((src / "dist").glob("*.deb")) and list((src / "dist").glob("*.rpm"))
