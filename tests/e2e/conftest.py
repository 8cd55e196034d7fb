# SPDX-License-Identifier: MIT
"""Fixtures for the e2e tests: the NCP emulator, and ncloudfs mounts that always clean up.

`emulator` is a fresh emulator per test (`@pytest.mark.emulator(images=N, notfound=
"empty", latency=S, seed=S, page_cap=N, overlap=K)` changes how it starts);
`emulator_module` is shared by a module; `make_emulator(**same)` starts more.
`mount(*opts, env=None, emulator=None, expect_fail=False, api_opts=True)` runs
./ncloudfs -f on a fresh mountpoint; at teardown it is unmounted and its output must
hold no error/warning line that the test did not allow with `m.allow_log(regex)`.
"""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import emu  # noqa: E402

LOG_PROBLEM = re.compile(r"error|warning", re.IGNORECASE)


def pytest_configure(config):
    """Register the emulator marker."""
    config.addinivalue_line("markers", "emulator(**options): options for the emulator fixture "
                                       "(images, seed, latency, notfound, http, page_cap, "
                                       "overlap)")


def stop_and_check(emulator):
    """Stop an emulator; fail if it printed a traceback."""
    stderr = emulator.stop()
    if "Traceback" in stderr:
        pytest.fail("the emulator raised:\n" + stderr, pytrace=False)


@pytest.fixture(scope="session")
def emu_cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made once per session: (cert, key)."""
    return emu.make_cert(tmp_path_factory.mktemp("cert"))


@pytest.fixture
def make_emulator(emu_cert, tmp_path):
    """Factory: make_emulator(**options) starts an emulator stopped at teardown."""
    started = []

    def start(**options):
        """Start one emulator with the given options."""
        workdir = tmp_path / ("emulator%d" % len(started))
        e = emu.Emulator(workdir, *emu_cert, **options)
        started.append(e)
        return e.start()

    yield start
    for e in started:
        stop_and_check(e)


@pytest.fixture
def emulator(request, make_emulator):
    """A fresh emulator for one test; options from @pytest.mark.emulator(...)."""
    marker = request.node.get_closest_marker("emulator")
    return make_emulator(**(marker.kwargs if marker else {}))


@pytest.fixture(scope="module")
def emulator_module(emu_cert, tmp_path_factory):
    """An emulator shared by every test of a module (reset its state yourself)."""
    e = emu.Emulator(tmp_path_factory.mktemp("emulator"), *emu_cert).start()
    yield e
    stop_and_check(e)


class Mount:
    """A live ncloudfs mount under test."""

    def __init__(self, daemon, expect_fail):
        """Wrap a started daemon."""
        self.daemon = daemon
        self.expect_fail = expect_fail
        self.allowed = []
        self.returncode = None
        self.killed = False

    @property
    def path(self):
        """The mountpoint."""
        return self.daemon.path

    @property
    def proc(self):
        """The daemon's Popen."""
        return self.daemon.proc

    def log(self):
        """The daemon's output so far."""
        return self.daemon.log()

    def allow_log(self, regex):
        """Declare that output lines matching regex are expected."""
        self.allowed.append(re.compile(regex))

    def kill(self):
        """SIGKILL the daemon (as a crash would) and reap it; its exit is then expected."""
        self.killed = True
        self.daemon.proc.kill()
        self.daemon.proc.wait(emu.STOP_TIMEOUT)

    def unmount(self):
        """Unmount and wait for the daemon to exit; return its exit code (idempotent)."""
        self.returncode = self.daemon.unmount()
        return self.returncode

    def problems(self):
        """Return what is wrong after teardown: bad exit, unexpected error/warning lines."""
        found = []
        if self.returncode != 0 and not self.expect_fail and not self.killed:
            found.append("ncloudfs exited %s after unmount" % self.returncode)
        if not self.expect_fail:
            found += [line for line in self.log().splitlines()
                      if LOG_PROBLEM.search(line) and not any(r.search(line) for r in self.allowed)]
        return found


class MountFactory:
    """Callable that mounts ncloudfs; .home is the daemon's HOME (for ~/.ncloud/configure)."""

    def __init__(self, tmp_path, default_emulator):
        """Mount under tmp_path, against default_emulator unless told otherwise."""
        self.tmp_path = tmp_path
        self.default_emulator = default_emulator
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.mounts = []

    def __call__(self, *opts, env=None, emulator=None, expect_fail=False, api_opts=True):
        """Run ncloudfs -f -o api_url=..,cafile=..[,opts] and wait for the mount (or its exit)."""
        emulator = emulator or self.default_emulator
        n = len(self.mounts)
        daemon = emu.Daemon(self.tmp_path / ("mnt%d" % n),
                            emu.daemon_args(emulator, opts, api_opts),
                            emu.daemon_env(emulator, self.home, env),
                            self.tmp_path / ("ncloudfs%d.log" % n))
        m = Mount(daemon, expect_fail)
        self.mounts.append(m)
        try:
            daemon.start()
            if not expect_fail:
                daemon.wait_mounted()
        except emu.MountError as e:
            problem = str(e)
        else:
            problem = self.wait_failure(m) if expect_fail else None
        if problem:
            pytest.fail(problem, pytrace=False)
        return m

    @staticmethod
    def wait_failure(m):
        """Wait for a daemon expected to fail; return a problem if it mounts or keeps running."""
        m.returncode = m.daemon.wait_exit()
        if m.returncode is None or m.daemon.mounted():
            return "ncloudfs was expected to fail but is running:\n" + m.log()
        return None

    def teardown(self):
        """Unmount everything, stop every daemon, then report problems in their output."""
        report = []
        for m in self.mounts:
            if m.daemon.proc is None:
                continue
            m.unmount()
            report += ["%s: %s" % (m.path, p) for p in m.problems()]
        if report:
            pytest.fail("ncloudfs misbehaved:\n" + "\n".join(report), pytrace=False)


@pytest.fixture
def mount(tmp_path, emulator):
    """Factory: mount(*opts, env=None, emulator=None, expect_fail=False, api_opts=True) -> Mount."""
    factory = MountFactory(tmp_path, emulator)
    yield factory
    factory.teardown()
