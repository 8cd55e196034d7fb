# SPDX-License-Identifier: MIT
"""make bench: ncloudfs's speed and memory targets, each measured side by side
with its baseline in one run against the emulator, printed as one table.

Usage: /usr/bin/python3 tests/bench/bench.py [--runs N]
"""

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import emu  # noqa: E402
import fresh  # noqa: E402

HERE = Path(__file__).resolve().parent
ROWS = []
# Images looked up directly (not listed) live in SGN, so KR stays at 1,000.
UNLISTED = [str(900001 + i) for i in range(100)]


def row(name, ours, base, ratio, target, ok):
    """Record one line of the table."""
    ROWS.append((name, str(ours), str(base), ratio, target, "pass" if ok else "FAIL"))
    print("  %-48s %s" % (name, ROWS[-1][5]), file=sys.stderr, flush=True)


def timed(cmd):
    """Run a shell command; return its wall time in seconds."""
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def parallel(cmds):
    """Run shell commands at once; return the wall time."""
    t = time.perf_counter()
    procs = [subprocess.Popen(c, shell=True, stdout=subprocess.DEVNULL) for c in cmds]
    for p in procs:
        p.wait()
    return time.perf_counter() - t


def calls(e, action=None):
    """API calls counted by the emulator (of one action, or all)."""
    c = e.counts()["calls"]
    return c[action] if action else sum(c.values())


class Mount:
    """A fresh ncloudfs mount: `with Mount(e, work) as m:`; m.path, m.rss_kib()."""

    def __init__(self, e, work, *opts):
        """Describe a mount of emulator e under work."""
        home = work / "home"
        home.mkdir(exist_ok=True)
        n = len(list(work.glob("mnt*")))
        self.daemon = emu.Daemon(work / ("mnt%d" % n), emu.daemon_args(e, opts),
                                 emu.daemon_env(e, home), work / ("ncloudfs%d.log" % n))
        self.path = self.daemon.path

    def __enter__(self):
        """Mount."""
        self.daemon.start().wait_mounted()
        return self

    def __exit__(self, *exc):
        """Unmount."""
        self.daemon.unmount()

    def rss_kib(self, field="VmRSS"):
        """The daemon's resident set in KiB (VmHWM: its peak)."""
        status = Path("/proc/%d/status" % self.daemon.proc.pid).read_text()
        return int(next(l for l in status.splitlines() if l.startswith(field + ":")).split()[1])


def cold_grep(e, work, runs):
    """Target 1: cold grep over a region vs a curl script making the same calls."""
    e.latency(0.02)
    n = len(e.images("KR"))
    pages = -(-n // 1000)
    ours, base, ncalls = [], [], []

    def run_ours():
        # delay_connect: the region list is fetched by the grep, as by the curl script
        with Mount(e, work, "delay_connect") as m:
            e.reset()
            ours.append(timed("grep -l UBUNTU %s/KR/*/osType" % m.path))
            ncalls.append(calls(e))

    def run_base():
        base.append(timed("%s/curl_baseline.sh %s %s %s %s KR %d" % (
            HERE, e.url, e.cafile, e.access_key, e.secret_key, pages)))

    # one warm-up of each, not counted: the emulator's first pages, the page cache
    run_ours()
    run_base()
    del ours[:], base[:], ncalls[:]
    for i in range(runs):  # alternating which goes first
        for run in (run_ours, run_base) if i % 2 == 0 else (run_base, run_ours):
            run()
    o, b = statistics.median(ours), statistics.median(base)
    row("1. cold grep over %d images: API calls" % n, max(ncalls), 1 + pages, "", "<= 3",
        max(ncalls) <= 3)
    row("1. cold grep: seconds vs curl script", "%.3f" % o, "%.3f" % b, "%.2f" % (o / b),
        "<= 1.2", o / b <= 1.2)


def warm_tools(e, work, runs):
    """Targets 2 and 13: warm grep -r and ls -lR vs the same tree copied to tmpfs,
    alternating."""
    shm = Path(tempfile.mkdtemp(dir="/dev/shm"))
    tools = [("2. warm grep -r: seconds vs tmpfs copy", "grep -r '' %s/KR", 1.5),
             ("13. warm ls -lR: seconds vs tmpfs copy", "ls -lR %s/KR", 1.3)]
    try:
        with Mount(e, work) as m:
            subprocess.run(["cp", "-r", str(m.path / "KR"), str(shm / "KR")], check=True)
            for name, cmd, target in tools:
                timed(cmd % m.path)
                e.reset()
                ours, base = [], []
                for _ in range(runs):
                    ours.append(timed(cmd % m.path))
                    base.append(timed(cmd % shm))
                warm_calls = calls(e)
                o, b = statistics.median(ours), statistics.median(base)
                row(name, "%.4f" % o, "%.4f" % b, "%.2f" % (o / b), "<= %s" % target,
                    o / b <= target and warm_calls == 0)
    finally:
        shutil.rmtree(shm)


def single_fetch(e, work):
    """Target 3: 16 readers of one uncached image make one detail call."""
    e.latency(0.1)
    with Mount(e, work) as m:
        os.stat(m.path / "SGN")
        e.reset()
        parallel(["cat %s/SGN/%s/osType" % (m.path, UNLISTED[0])] * 16)
        n = calls(e, "getServerImageDetail")
    row("3. 16 readers of one image: detail calls", n, 1, "", "== 1", n == 1)


def overlap(e, work):
    """Target 4: 64 uncached images, 16 parallel readers, 100 ms per call."""
    e.latency(0.1)
    with Mount(e, work) as m:
        os.stat(m.path / "SGN")
        files = ["%s/SGN/%s/osType" % (m.path, n) for n in UNLISTED[:64]]
        t = parallel(["cat " + " ".join(files[i::16]) for i in range(16)])
    ideal = 64 / 16 * 0.1
    row("4. 64 images, 16 readers: seconds vs ideal", "%.3f" % t, "%.3f" % ideal,
        "%.2f" % (t / ideal), "<= 1.5", t / ideal <= 1.5)


def connections(e, work):
    """Target 5: 100 sequential uncached fetches reuse their connections."""
    e.latency(0.02)
    e.reset()
    with Mount(e, work) as m:
        for n in UNLISTED:
            (m.path / "SGN" / n / "osType").read_bytes()
        c = e.counts()
    ok = (1 <= c["api_connections"] <= 4
          and c["calls"]["getServerImageDetail"] == len(UNLISTED))
    row("5. 100 sequential fetches: TCP/TLS connections", c["api_connections"], "", "",
        "<= 4", ok)


def big_region(e, work):
    """Target 7: ls -l over 10,000 images costs the list pages only."""
    e.latency(0.02)
    n = len(e.images("KR"))
    pages = -(-n // 1000)
    with Mount(e, work) as m:
        os.stat(m.path / "KR")
        e.reset()
        out = subprocess.run(["ls", "-l", str(m.path / "KR")], check=True,
                             capture_output=True, text=True).stdout
        c = e.counts()["calls"]
    listed = len(out.splitlines()) - 1
    ok = c["getServerImageDetail"] == 0 and c["getServerImageList"] == pages and listed == n
    row("7. ls -l over %d images: API calls (pages)" % n, sum(c.values()), pages, "",
        "pages only", ok)


def memory(e, work):
    """Target 6: RSS per cached image with 100,000 images listed, and the peak while
    listing above the steady state."""
    e.latency(0.02)
    n = len(e.images("KR"))
    raw = len(e.call("getServerImageList", {"regionCode": "KR", "pageNo": 1,
                                            "pageSize": 1000}).body) / 1000
    with Mount(e, work) as m:
        os.stat(m.path / "KR")
        before = m.rss_kib()
        os.listdir(m.path / "KR")
        time.sleep(0.5)  # the last page's JSON is freed off the request's path
        after, peak = m.rss_kib(), m.rss_kib("VmHWM")
    per = (after - before) * 1024 / n
    row("6. RSS per cached image, %d listed, bytes (raw JSON)" % n, "%.0f" % per, "%.0f" % raw,
        "%.2f" % (per / raw), "<= 1024", per <= 1024)
    row("6. peak RSS while listing above steady, MiB", "%.1f" % ((peak - after) / 1024),
        "%.1f" % (after / 1024), "", "<= 64", peak - after <= 64 * 1024)


def cold_ls(e, work, runs):
    """Target 14: cold ls of a 10,000-image region at 100 ms per call vs a curl script
    fetching page 1, then the other pages at once."""
    e.latency(0.1)
    n = len(e.images("KR"))
    pages = -(-n // 1000)
    ours, base, lists = [], [], []
    for _ in range(runs):
        with Mount(e, work, "delay_connect") as m:
            e.reset()
            ours.append(timed("ls %s/KR" % m.path))
            lists.append(calls(e, "getServerImageList"))
        base.append(timed("%s/curl_baseline.sh %s %s %s %s KR %d at-once" % (
            HERE, e.url, e.cafile, e.access_key, e.secret_key, pages)))
    o, b = statistics.median(ours), statistics.median(base)
    row("14. cold ls of %d images, 100 ms calls: s vs curl at once" % n, "%.3f" % o,
        "%.3f" % b, "%.2f" % (o / b), "<= 1.3", o / b <= 1.3 and max(lists) == pages)


def print_table():
    """Print the results as a Markdown table, with the machine they ran on."""
    head = ("measurement", "ncloudfs", "baseline", "ratio", "target", "result")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in ROWS:
        print("| " + " | ".join(r) + " |")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    print("\n%s, %d cores, kernel %s, emulator latency 20 ms per call (100 ms for 3 and 4)"
          % (cpu, os.cpu_count(), platform.release()))


def main():
    """Run every measurement against fresh emulators and print the table."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5, help="runs for medians (default 5)")
    ap.add_argument("--only", help="run only one group of rows (grep: 1, tools: 1-5, fresh: 8-12, scale: 6, 7, 14)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ncloudfs-bench-"))
    cert = emu.make_cert(root)
    try:
        with emu.Emulator(root / "emu1k", *cert, images=999) as e:
            template = e.image("KR", "3135")
            for no in UNLISTED:
                e.put_image("SGN", dict(template, serverImageNo=no))
            if args.only in (None, "tools", "grep"):
                cold_grep(e, root, args.runs)
            if args.only in (None, "tools"):
                warm_tools(e, root, args.runs)
                single_fetch(e, root)
                overlap(e, root)
                connections(e, root)
            if args.only in (None, "fresh"):
                fresh.run(e, root, Mount, row)
        if args.only in (None, "scale"):
            with emu.Emulator(root / "emu10k", *cert, images=9999) as e:
                big_region(e, root)
                cold_ls(e, root, args.runs)
            with emu.Emulator(root / "emu100k", *cert, images=99999) as e:
                memory(e, root)
    finally:
        subprocess.run("for m in %s/mnt*; do fusermount3 -uz $m; done 2>/dev/null" % root,
                       shell=True)
        shutil.rmtree(root, ignore_errors=True)
    print_table()
    sys.exit(0 if all(r[5] == "pass" for r in ROWS) else 1)


if __name__ == "__main__":
    main()
