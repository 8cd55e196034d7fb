# SPDX-License-Identifier: MIT
"""make soak: parallel walkers read a 2,000-image mount while the API fails at random.

Every read must give the exact bytes the README's tree rules derive from the
emulator's data, or an error; the daemon must stay mounted and its RSS and open
file descriptors must not grow. Exit 0 on pass, 1 on fail.

RSS and fds are sampled after a fault-free warm-up (a full walk, then --warmup seconds
of the soak's own load, so that the FUSE thread pool and the cache reach their steady
size) and again after a fault-free walk that follows the soak.

Usage: /usr/bin/python3 tests/soak/soak.py [--seconds N] [--warmup N] [--walkers N] [--seed N]
"""

import argparse
import collections
import concurrent.futures
import errno
import multiprocessing
import os
import random
import re
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import emu  # noqa: E402
from expect import file_bytes, is_code  # noqa: E402

REGION = "KR"
EXTRA_IMAGES = 1999  # plus 3135: 2,000 images
DAEMON_OPTS = ["ttl=1", "timeout=2"]
CHAOS_RATE = 0.05
CHAOS_KINDS = ["503", "429", "hang", "malformed", "500", "truncated", "nonjson"]
HANG_SECONDS = 3
SETTLE_SECONDS = 1
MAX_GROWTH = 0.10
SUBSET = (50, 500)  # images per walker pass: a random count in this range
EXAMPLES = 5
LOG_LEVEL = re.compile(r"^ncloudfs: (error|warning|info|debug): ")


def node_of(value):
    """Return the expected tree of a JSON value: dict for a directory, bytes for a file."""
    if isinstance(value, dict) and not is_code(value):
        return {k: node_of(v) for k, v in value.items() if valid_name(k)}
    if isinstance(value, list):
        return {str(i): node_of(v) for i, v in enumerate(value)}
    return file_bytes(value)


def valid_name(key):
    """Tell whether a key can be a file name."""
    return 0 < len(key.encode()) <= 255 and key not in (".", "..") and "/" not in key


class Stats:
    """What walkers saw: reads, errors by errno, wrong bytes and listings, examples."""

    def __init__(self):
        """Start at zero."""
        self.reads = 0
        self.errors = collections.Counter()
        self.wrong_bytes = 0
        self.wrong_listings = 0
        self.examples = []

    def error(self, path, e):
        """Count one OSError and keep it as an example."""
        name = errno.errorcode.get(e.errno, str(e.errno))
        self.errors[name] += 1
        self.example("%s on %s" % (name, path))

    def example(self, text):
        """Keep a few examples of what went wrong."""
        if len(self.examples) < EXAMPLES:
            self.examples.append(text)

    def merge(self, other):
        """Add another walker's figures to these."""
        self.reads += other.reads
        self.errors.update(other.errors)
        self.wrong_bytes += other.wrong_bytes
        self.wrong_listings += other.wrong_listings
        for text in other.examples:
            self.example(text)

    def error_count(self):
        """Return the number of failed operations."""
        return sum(self.errors.values())

    def errors_text(self):
        """Return errors as 'EIO n, ENOENT n, EACCES n, other n (NAME n, ...)'."""
        main = ("EIO", "ENOENT", "EACCES")
        other = {k: v for k, v in self.errors.items() if k not in main}
        text = ", ".join("%s %d" % (k, self.errors[k]) for k in main)
        text += ", other %d" % sum(other.values())
        if other:
            text += " (%s)" % ", ".join("%s %d" % kv for kv in sorted(other.items()))
        return text


def check_listing(path, names, expected, st):
    """Compare a directory's names with the expected ones."""
    if set(names) != set(expected):
        st.wrong_listings += 1
        missing, extra = sorted(set(expected) - set(names)), sorted(set(names) - set(expected))
        st.example("wrong listing of %s: missing %s, extra %s" % (path, missing[:5], extra[:5]))


def walk_dir(path, tree, st):
    """Read every file under path (like find -type f -exec cat), checking each against tree."""
    try:
        names = os.listdir(path)
    except OSError as e:
        st.error(path, e)
        return
    check_listing(path, names, tree, st)
    for name in names:
        expected = tree.get(name)
        if isinstance(expected, dict):
            walk_dir(os.path.join(path, name), expected, st)
        elif expected is not None:
            read_file(os.path.join(path, name), expected, st)


def read_file(path, expected, st):
    """Read one file whole and compare it with the expected bytes."""
    try:
        with open(path, "rb") as f:
            got = f.read()
    except OSError as e:
        st.error(path, e)
        return
    st.reads += 1
    if got != expected:
        st.wrong_bytes += 1
        st.example("wrong bytes in %s: expected %r, got %r" % (path, expected[:80], got[:80]))


def walk_region(mnt, expected, nos, deadline, st):
    """List the region, then walk the images nos in order until deadline."""
    region = os.path.join(mnt, REGION)
    try:
        check_listing(region, os.listdir(region), expected, st)
    except OSError as e:
        st.error(region, e)
    for no in nos:
        if time.monotonic() >= deadline:
            return
        walk_dir(os.path.join(region, no), expected[no], st)


def walker(mnt, expected, nos, seed, deadline, queue):
    """Walker process: walk nos once (seed None), else random subsets, until deadline."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops walkers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    st = Stats()
    if seed is None:
        walk_region(mnt, expected, nos, deadline, st)
    else:
        rng = random.Random(seed)
        while time.monotonic() < deadline:
            subset = rng.sample(nos, min(len(nos), rng.randint(*SUBSET)))
            walk_region(mnt, expected, subset, deadline, st)
    queue.put(st)


class Rig:
    """The emulator, the mount and the walker processes of one soak run."""

    def __init__(self, work):
        """Describe a run under the directory work."""
        self.work = Path(work)
        self.emulator = None
        self.daemon = None
        self.walkers = []
        self.exit_code = None

    def start(self):
        """Start the emulator with 2,000 images in KR and mount ncloudfs."""
        self.emulator = emu.Emulator(self.work / "emulator", images=EXTRA_IMAGES).start()
        home = self.work / "home"
        home.mkdir()
        self.daemon = emu.Daemon(self.work / "mnt", emu.daemon_args(self.emulator, DAEMON_OPTS),
                                 emu.daemon_env(self.emulator, home), self.work / "ncloudfs.log")
        self.daemon.start().wait_mounted()

    def expected_tree(self):
        """Fetch every image once through the control API; return {no: tree}."""
        nos = self.emulator.images(REGION)
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            images = pool.map(lambda no: self.emulator.image(REGION, no), nos)
            return {no: node_of(image) for no, image in zip(nos, images)}

    def walk(self, expected, plans, timeout):
        """Run one walker process per (nos, seed, deadline) plan; return merged Stats, stuck."""
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        self.walkers = [ctx.Process(target=walker, args=(str(self.daemon.path), expected, *plan,
                                                         queue)) for plan in plans]
        for p in self.walkers:
            p.start()
        total, stuck = Stats(), 0
        deadline = time.monotonic() + timeout
        for _ in plans:
            try:
                total.merge(queue.get(timeout=max(0.1, deadline - time.monotonic())))
            except Empty:
                stuck += 1
        self.stop_walkers()
        return total, stuck

    def stop_walkers(self):
        """Stop every walker still running (SIGTERM, then SIGKILL)."""
        for p in self.walkers:
            p.join(0.5)
            if p.is_alive():
                p.terminate()
                p.join(5)
            if p.is_alive():
                p.kill()
                p.join()
        self.walkers = []

    def sample(self):
        """Return the daemon's (VmRSS in KiB, open fds)."""
        pid = self.daemon.proc.pid
        status = Path("/proc/%d/status" % pid).read_text()
        rss = int(next(l for l in status.splitlines() if l.startswith("VmRSS:")).split()[1])
        return rss, len(os.listdir("/proc/%d/fd" % pid))

    def alive(self):
        """Tell whether the daemon runs and its mount answers."""
        if self.daemon.proc.poll() is not None or not self.daemon.mounted():
            return False
        try:
            os.stat(self.daemon.path / REGION)
        except OSError as e:
            return e.errno != errno.ENOTCONN  # an API error is an answer too
        return True

    def log_levels(self):
        """Count the daemon's log lines by level."""
        levels = collections.Counter()
        for line in self.daemon.log().splitlines():
            m = LOG_LEVEL.match(line)
            levels[m.group(1) if m else "other"] += 1
        return levels

    def stop(self):
        """Stop walkers, unmount, stop the emulator; keep the daemon's exit code."""
        self.stop_walkers()
        if self.daemon and self.daemon.proc:
            self.exit_code = self.daemon.unmount()
        if self.emulator:
            self.emulator.stop()


def growth(start, end):
    """Return end's growth over start as a fraction."""
    return (end - start) / start if start else float("inf")


def full_walk(rig, expected, walkers):
    """Walk every image once, split among walkers; return (Stats, stuck, seconds)."""
    nos = list(expected)
    random.Random(0).shuffle(nos)
    t = time.monotonic()
    plans = [(nos[i::walkers], None, float("inf")) for i in range(walkers)]
    st, stuck = rig.walk(expected, plans, 600)
    return st, stuck, time.monotonic() - t


def random_walk(rig, expected, walkers, seconds, seed):
    """Walk random subsets with every walker for seconds; return (Stats, stuck, seconds)."""
    rng = random.Random(seed)
    t = time.monotonic()
    plans = [(list(expected), rng.randrange(2**32), t + seconds) for _ in range(walkers)]
    st, stuck = rig.walk(expected, plans, seconds + 120)
    return st, stuck, time.monotonic() - t


def settled_sample(rig):
    """Sample RSS and fds once the daemon is idle (the last answers freed)."""
    time.sleep(SETTLE_SECONDS)
    return rig.sample()


def soak(rig, args, report):
    """Warm up, soak under chaos, walk again without faults; fill report; return checks."""
    rig.start()
    expected = rig.expected_tree()
    nfiles = sum(count_files(t) for t in expected.values())
    report.append("ncloudfs soak: %d images (%d files) in %s, %d walkers, %d s warm-up + %d s "
                  "chaos, -o %s, chaos %g%% of %s (seed %d)"
                  % (len(expected), nfiles, REGION, args.walkers, args.warmup, args.seconds,
                     ",".join(DAEMON_OPTS), CHAOS_RATE * 100, " ".join(CHAOS_KINDS), args.seed))
    phases = [("warm-up full walk, no faults", full_walk(rig, expected, args.walkers)),
              ("warm-up load, no faults",
               random_walk(rig, expected, args.walkers, args.warmup, args.seed + 1))]
    rss0, fds0 = settled_sample(rig)
    rig.emulator.reset()
    rig.emulator.chaos(CHAOS_RATE, CHAOS_KINDS, HANG_SECONDS, seed=args.seed)
    chaos_phase = random_walk(rig, expected, args.walkers, args.seconds, args.seed)
    alive = rig.alive()
    counts = rig.emulator.counts()
    rig.emulator.chaos(0)
    time.sleep(HANG_SECONDS)  # let the last hung requests end
    phases += [("soak, chaos on", chaos_phase),
               ("recovery full walk, no faults", full_walk(rig, expected, args.walkers))]
    rss1, fds1 = settled_sample(rig)
    for label, (st, stuck, secs) in phases:
        report.append(walk_line(label, st, stuck, secs))
        report += ["    " + text for text in st.examples]
    report.append("  daemon RSS: %d KiB -> %d KiB (%+.1f%%)" % (rss0, rss1,
                                                              100 * growth(rss0, rss1)))
    report.append("  daemon fds: %d -> %d (%+.1f%%)" % (fds0, fds1, 100 * growth(fds0, fds1)))
    chaos = counts["chaos"]
    report.append("  chaos faults injected: %d of %d API calls (%s)" % (
        sum(chaos.values()), sum(counts["calls"].values()),
        ", ".join("%s %d" % (k, chaos.get(k, 0)) for k in CHAOS_KINDS)))
    stats = [st for _, (st, _, _) in phases]
    return [("daemon alive and mounted after the soak", alive),
            ("every walker finished", all(stuck == 0 for _, (_, stuck, _) in phases)),
            ("wrong bytes 0", sum(st.wrong_bytes for st in stats) == 0),
            ("wrong listings 0", sum(st.wrong_listings for st in stats) == 0),
            ("no errors without faults", all(st.error_count() == 0
                                             for st in stats[:2] + stats[3:])),
            ("RSS growth < 10%", growth(rss0, rss1) < MAX_GROWTH),
            ("fd growth < 10%", growth(fds0, fds1) < MAX_GROWTH)]


def count_files(tree):
    """Count the files in an expected tree."""
    return sum(count_files(v) if isinstance(v, dict) else 1 for v in tree.values())


def walk_line(what, st, stuck, secs):
    """Format one phase's figures."""
    return ("  %s: %d reads in %.1f s, errors: %s; wrong bytes %d, wrong listings %d%s"
            % (what, st.reads, secs, st.errors_text(), st.wrong_bytes, st.wrong_listings,
               "; %d walkers stuck" % stuck if stuck else ""))


def parse_args():
    """Parse the command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=60, help="soak duration (default 60)")
    ap.add_argument("--warmup", type=int, default=30,
                    help="fault-free load before the first RSS sample (default 30)")
    ap.add_argument("--walkers", type=int, default=8, help="parallel walkers (default 8)")
    ap.add_argument("--seed", type=int, default=1, help="chaos and walker seed (default 1)")
    return ap.parse_args()


def main():
    """Run the soak, always clean up, print the report and the verdict."""
    args = parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop as on Ctrl-C
    work = Path(tempfile.mkdtemp(prefix="ncloudfs-soak-"))
    rig, report, checks = Rig(work), [], None
    try:
        checks = soak(rig, args, report)
    except KeyboardInterrupt:
        report.append("interrupted")
    except (emu.EmulatorError, emu.MountError, OSError) as e:
        report.append("soak aborted: %s" % e)
    finally:
        rig.stop()
    levels = rig.log_levels() if rig.daemon and rig.daemon.log_path.exists() else {}
    report.append("  daemon log lines: %s" % ", ".join(
        "%s %d" % (k, levels.get(k, 0)) for k in ("error", "warning", "info", "debug", "other")))
    report.append("  daemon exit code after unmount: %s" % rig.exit_code)
    checks = (checks or [("soak ran to the end", False)]) + [
        ("daemon exited 0 after unmount", rig.exit_code == 0)]
    ok = all(passed for _, passed in checks)
    print("\n".join(report))
    for name, passed in checks:
        print("  [%s] %s" % ("pass" if passed else "FAIL", name))
    if ok:
        shutil.rmtree(work, ignore_errors=True)
        print("PASS")
    else:
        print("FAIL (daemon log and data kept in %s)" % work)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
