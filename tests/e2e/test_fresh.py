# SPDX-License-Identifier: MIT
"""Fresh without waiting, on real mounts: refresh ahead of the ttl, the region list off the
path, stale answers at once during an outage, images in transition followed within
busy_ttl, Ctrl-C on a reader of a hung API, the age of answers in extended attributes, and
an idle mount that calls nothing. Claims are counts (/.stats reads_waited, API calls), never
durations."""

import os
import signal
import subprocess
import sys
import time

import pytest
from expect import read, stats, wait_until, wait_fetches_started

DETAIL, LIST, REGIONS = "getServerImageDetail", "getServerImageList", "getRegionList"
IMAGE = "3135"


def detail_requests(emulator):
    """getServerImageDetail requests the emulator has answered, failed ones included."""
    return len([r for r in emulator.requests() if r["action"] == DETAIL])


def poll(path, seconds, every, expect):
    """Read path every `every` s for `seconds` s, each time expecting `expect`; the count."""
    start = time.monotonic()
    reads = 0
    while time.monotonic() - start < seconds:
        assert read(path) == expect
        reads += 1
        time.sleep(every)
    return reads


def calls(emulator):
    """The emulator's API call counts by action."""
    return emulator.counts()["calls"]


@pytest.mark.emulator(latency=0.2)
def test_a_poller_never_waits_after_its_first_read(emulator, mount):
    """A status read every 0.3 s for 12 s with ttl=4 at 200 ms per call: only the first
    read waits for the API; the rest are answered at once while refreshes run in the
    background, at most one image call and one region-list call per refresh period."""
    m = mount("ttl=4", "delay_connect")
    path = m.path / "KR" / IMAGE / "serverImageStatus"
    read(path)
    first = stats(m.path)
    assert first["reads_waited"] == 2  # the region list, then the image
    reads = poll(path, 12, 0.3, "CREAT\n")
    s = stats(m.path)
    assert s["reads_waited"] == first["reads_waited"], s
    assert s["refresh_ahead"] + s["refresh_revalidations"] >= 2, s
    c = calls(emulator)
    # 12 s is three ttls; a refresh starts no earlier than 80% into one
    assert 2 <= c[DETAIL] <= 1 + 12 / (4 * 0.8) + 1, c
    assert c[REGIONS] <= 1 + 12 / (4 * 0.8) + 1, c
    assert reads > 20


def test_an_idle_mount_makes_no_calls(emulator, mount):
    """After reads, a mount left alone for several ttls calls nothing at all."""
    m = mount("ttl=1")
    read(m.path / "KR" / IMAGE / "osType")
    os.listdir(m.path / "KR")
    time.sleep(0.5)  # let any refresh those reads started land
    before = emulator.counts()["calls"]
    time.sleep(4)
    assert emulator.counts()["calls"] == before


def test_an_image_in_transition_is_followed_within_busy_ttl(emulator, mount):
    """With ttl=60, an image being created is fetched again every busy_ttl (1 s here), so
    `until [ "$(cat status)" = CREAT ]` ends soon after the API says so; a settled image
    stays cached for the ttl."""
    emulator.set_field("KR", IMAGE, ["serverImageStatusName"], "creating")
    emulator.set_field("KR", IMAGE, ["serverImageStatus", "code"], "INIT")
    m = mount("ttl=60", "busy_ttl=1")
    path = m.path / "KR" / IMAGE / "serverImageStatus"
    assert read(path) == "INIT\n"
    emulator.set_field("KR", IMAGE, ["serverImageStatus", "code"], "CREAT")
    emulator.set_field("KR", IMAGE, ["serverImageStatusName"], "created")
    # a deadline far below the ttl: only busy_ttl can end this loop in time
    wait_until(lambda: read(path) == "CREAT\n", "the image to be seen as created", 20)
    settled = calls(emulator)[DETAIL]
    time.sleep(2.5)
    assert read(path) == "CREAT\n"
    assert calls(emulator)[DETAIL] == settled  # created: held the whole ttl


def test_a_region_listing_holding_a_busy_image_is_held_busy_ttl(emulator, mount):
    """A listing that holds an image in transition is fetched again after busy_ttl, so new
    images and states show in `ls` without waiting for the ttl."""
    emulator.set_field("KR", IMAGE, ["serverImageStatusName"], "copying")
    m = mount("ttl=60", "busy_ttl=1")
    before = sorted(os.listdir(m.path / "KR"))
    lists = calls(emulator)[LIST]
    emulator.put_image("KR", dict(emulator.image("KR", IMAGE), serverImageNo="777777",
                                  serverImageName="fresh-one"))
    wait_until(lambda: "777777" in os.listdir(m.path / "KR"), "the new image in the listing",
               20)
    assert sorted(os.listdir(m.path / "KR")) == sorted(before + ["777777"])
    assert calls(emulator)[LIST] > lists


def test_an_outage_serves_stale_answers_at_once(emulator, mount):
    """Every API call failing, data inside stale: no read waits, and a background task
    tries the API with backoff (5 s, then 10 s): not on every read."""
    m = mount("ttl=1", "stale=300", "retries=0")
    m.allow_log(r"HTTP 503|refresh failed")
    path = m.path / "KR" / IMAGE / "osType"
    read(path)
    waited = stats(m.path)["reads_waited"]
    emulator.fault("503", count=-1)
    before = detail_requests(emulator)
    reads = poll(path, 8, 0.05, "UBUNTU\n")
    s = stats(m.path)
    assert s["reads_waited"] == waited, s
    assert s["refresh_failures"] >= 1, s
    assert s["cache_stale_serves"] >= 1, s
    # one try to find the outage, then one per backoff step (5 s): at most 3 in 8 s
    detail_tries = detail_requests(emulator) - before
    assert 1 <= detail_tries <= 3, detail_tries
    assert reads > 50
    emulator.clear_faults()


def test_xattrs_show_the_age_of_answers(emulator, mount):
    """user.ncp.fetched (RFC 3339 UTC) and user.ncp.state on the root, a region and an image
    directory; other namespaces are not supported, so ls -l stops asking for them."""
    m = mount()
    os.listdir(m.path / "KR")
    read(m.path / "KR" / IMAGE / "osType")
    now = time.time()
    for d in (m.path, m.path / "KR", m.path / "KR" / IMAGE):
        names = os.listxattr(d)
        assert "user.ncp.fetched" in names and "user.ncp.state" in names, (d, names)
        assert os.getxattr(d, "user.ncp.state") == b"fresh"
        fetched = os.getxattr(d, "user.ncp.fetched").decode()
        when = time.mktime(time.strptime(fetched, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
        assert now - 120 <= when <= now + 1, fetched
    out = subprocess.run(["getfattr", "-d", str(m.path / "KR" / IMAGE)], capture_output=True,
                         text=True, check=True).stdout
    assert 'user.ncp.state="fresh"' in out and "user.ncp.fetched=" in out, out
    with pytest.raises(OSError) as e:
        os.getxattr(m.path / "KR" / IMAGE, "security.selinux")
    assert e.value.errno == 95  # EOPNOTSUPP


CAT = r"""
import sys
try:
    with open(sys.argv[1]) as f:
        f.read()
    print("read", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
except OSError as e:
    print("error %d" % e.errno, flush=True)
"""


def test_ctrl_c_interrupts_a_reader_of_a_hung_api(emulator, mount):
    """A reader blocked on a hung API gets EINTR (here KeyboardInterrupt) from SIGINT while
    the request still hangs (timeout 30 s); nobody else waiting, the fetch is abandoned
    without another try; the next reader fetches afresh."""
    m = mount("timeout=30", "retries=3")
    os.listdir(m.path)
    emulator.fault("hang", action=DETAIL, count=1)
    misses = stats(m.path)["cache_misses"]
    waited = stats(m.path)["reads_waited"]
    reader = subprocess.Popen([sys.executable, "-c", CAT, str(m.path / "KR" / IMAGE / "osType")],
                              stdout=subprocess.PIPE, text=True)
    try:
        wait_fetches_started(m.path, misses)
        wait_until(lambda: stats(m.path)["reads_waited"] > waited, "the reader to wait")
        reader.send_signal(signal.SIGINT)
        out, _ = reader.communicate(timeout=25)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert out.strip() == "interrupted", out
    # the hung request had not been answered when the reader got its EINTR
    answered = [r for r in emulator.requests() if r["action"] == DETAIL]
    assert not answered, answered
    wait_until(lambda: stats(m.path)["fetches_abandoned"] == 1, "the fetch to be abandoned")
    s = stats(m.path)
    assert s["reads_interrupted"] == 1, s
    assert s["api_retries"] == 0 and s["api_calls.getServerImageDetail.cancelled"] == 1, s
    assert read(m.path / "KR" / IMAGE / "osType") == "UBUNTU\n"


def test_an_interrupted_reader_leaves_the_fetch_to_the_others(emulator, mount):
    """Two readers wait on one hung fetch (through two names, KR/3135 and KR/3135.json: the
    kernel itself holds a second lookup of one name); SIGINT to one: it returns, the other
    waits on until the fetch ends."""
    m = mount("timeout=30", "retries=0")
    m.allow_log(r"getServerImageDetail")
    os.listdir(m.path)
    emulator.fault("hang", action=DETAIL, count=1)
    paths = [m.path / "KR" / IMAGE / "osType", m.path / "KR" / (IMAGE + ".json")]
    waited = stats(m.path)["reads_waited"]
    readers = [subprocess.Popen([sys.executable, "-c", CAT, str(p)], stdout=subprocess.PIPE,
                                text=True) for p in paths]
    try:
        wait_until(lambda: stats(m.path)["reads_waited"] >= waited + 2, "both readers to wait")
        readers[0].send_signal(signal.SIGINT)
        out0, _ = readers[0].communicate(timeout=25)
        assert out0.strip() == "interrupted"
        assert readers[1].poll() is None
        emulator.clear_faults()  # the hung request ends: the fetch is tried no more
        out1, _ = readers[1].communicate(timeout=25)
    finally:
        for r in readers:
            if r.poll() is None:
                r.kill()
                r.wait()
    # the hang ends with a dropped connection, which libcurl may try once more on a new
    # one: the reader gets the answer or EIO; what counts is that it waited for the
    # fetch's end, and that the fetch was not abandoned
    assert out1.strip() in ("read", "error 5"), out1
    assert stats(m.path)["fetches_abandoned"] == 0
