#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""`make demo`: start the NCP emulator, mount ./ncloudfs, show it in use, wait for Ctrl-C.

Usage: /usr/bin/python3 tests/demo.py [--mnt DIR]   (default mountpoint: ./mnt in the repo)
"""

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "e2e"))
import emu  # noqa: E402

COMMANDS = [
    "ls {m}",
    "ls {m}/KR | head",
    "cat {m}/KR/3135/osType",
    "cat {m}/KR/3135/blockStorageMappingList/0/iops",
    "grep -l UBUNTU {m}/KR/*/osType | head",
]
JQ_COMMAND = "jq .osType {m}/KR/3135.json"


def show(command):
    """Print a shell command and then its real output."""
    print("$ " + command, flush=True)
    done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=60)
    print(done.stdout + done.stderr, end="", flush=True)


def wait_for_stop_signal():
    """Block until SIGINT or SIGTERM (stdin is not read: EOF does not stop the demo)."""
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    signal.sigwait(stop_signals)


def demo(mountpoint, workdir):
    """Run the emulator and the mount; return the exit status."""
    with emu.Emulator(workdir / "emulator") as emulator:
        if emu.mountinfo_has(mountpoint):
            emu.fusermount_unmount(mountpoint)
        daemon = emu.Daemon(mountpoint, emu.daemon_args(emulator, []),
                            emu.daemon_env(emulator, workdir), workdir / "ncloudfs.log")
        try:
            daemon.start().wait_mounted()
        except emu.MountError as e:
            print("demo: %s" % e, file=sys.stderr)
            if daemon.proc:
                daemon.unmount()
            return 1
        try:
            print("emulator at %s; ncloudfs mounted on %s\n" % (emulator.url, mountpoint))
            commands = COMMANDS + ([JQ_COMMAND] if shutil.which("jq") else [])
            for command in commands:
                show(command.format(m=mountpoint))
            print("\nmounted on %s; press Ctrl-C to stop" % mountpoint, flush=True)
            wait_for_stop_signal()
        finally:
            code = daemon.unmount()
            print("\nunmounted %s (ncloudfs exited %d); emulator stopped" % (mountpoint, code))
    return 0


def main():
    """Parse --mnt and run the demo in a temporary directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnt", default=str(emu.REPO / "mnt"), help="mountpoint (default ./mnt)")
    mountpoint = Path(parser.parse_args().mnt).absolute()
    with tempfile.TemporaryDirectory(prefix="ncloudfs-demo-") as workdir:
        return demo(mountpoint, Path(workdir))


if __name__ == "__main__":
    sys.exit(main())
