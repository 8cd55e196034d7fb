# SPDX-License-Identifier: MIT
"""A good citizen toward the API's rate limits: at most max_requests API requests in flight
per mount whatever the number of readers, halved on a 429 and grown back gradually. Counts
come from the emulator's own record of when each request arrived and was answered."""

import threading

import pytest
from expect import read, stats

DETAIL = "getServerImageDetail"
UNLISTED = [str(700001 + i) for i in range(64)]


def peak_in_flight(requests):
    """The most requests the emulator was serving at once."""
    events = sorted([(r["received"], 1) for r in requests] +
                    [(r["answered"], -1) for r in requests], key=lambda e: (e[0], e[1]))
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def add_unlisted(emulator):
    """64 images in SGN, looked up by number (never listed)."""
    template = emulator.image("KR", "3135")
    for no in UNLISTED:
        emulator.put_image("SGN", dict(template, serverImageNo=no))


def read_all_at_once(m, numbers):
    """One reader thread per image; the texts read."""
    out = {}

    def one(no):
        out[no] = read(m.path / "SGN" / no / "osType")

    threads = [threading.Thread(target=one, args=(no,)) for no in numbers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


@pytest.mark.parametrize("opts, limit", [((), 16), (("max_requests=4",), 4)])
@pytest.mark.emulator(latency=0.3)
def test_readers_never_have_more_than_max_requests_in_flight(emulator, mount, opts, limit):
    """64 readers of 64 unlisted images: every one answered, never more than max_requests
    requests in flight at the emulator (default 16)."""
    add_unlisted(emulator)
    m = mount(*opts)
    emulator.reset()
    out = read_all_at_once(m, UNLISTED)
    assert out == {no: "UBUNTU\n" for no in UNLISTED}
    requests = [r for r in emulator.requests() if r["action"] == DETAIL]
    assert len(requests) == 64
    peak = peak_in_flight(requests)
    assert 2 <= peak <= limit, peak
    s = stats(m.path)
    assert s["api_requests_peak"] <= limit and s["api_requests_limit"] == limit, s


def test_a_429_halves_the_limit_which_grows_back(emulator, mount):
    """A 429 halves the requests allowed in flight (8 -> 4); good answers grow it back by
    one per limit answers (4 + 5 + 6 + 7 = 22 answers back to 8)."""
    add_unlisted(emulator)
    m = mount("max_requests=8")
    assert stats(m.path)["api_requests_limit"] == 8
    emulator.fault("429", action=DETAIL, count=1, retry_after=0.1)
    assert read(m.path / "SGN" / UNLISTED[0] / "osType") == "UBUNTU\n"  # retried
    assert stats(m.path)["api_requests_limit"] == 4
    for no in UNLISTED[1:12]:
        read(m.path / "SGN" / no / "osType")
    assert 4 < stats(m.path)["api_requests_limit"] < 8
    for no in UNLISTED[12:30]:
        read(m.path / "SGN" / no / "osType")
    assert stats(m.path)["api_requests_limit"] == 8


def test_max_requests_is_checked(mount):
    """max_requests must be 1 to 1024."""
    for bad in ("0", "1025", "many"):
        m = mount("max_requests=" + bad, expect_fail=True)
        assert m.returncode == 1
        assert "max_requests" in m.log()
