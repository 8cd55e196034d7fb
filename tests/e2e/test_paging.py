# SPDX-License-Identifier: MIT
"""Listing a region through a gateway that caps or shifts its pages, and waiting as long as
Retry-After says, on real mounts. Listings are checked against the emulator's images and
counted in calls; waits are measured with the emulator's own request times, lower bounds
only: nothing here depends on how fast the test machine is."""

import email.utils
import math
import os

import pytest
from expect import read

DETAIL, LIST, REGIONS = "getServerImageDetail", "getServerImageList", "getRegionList"
PAGE_SIZE = 1000  # what ncloudfs asks for (fs/cache.c LIST_PAGE_SIZE)


def calls(emulator):
    """The emulator's API call counts by action."""
    return emulator.counts()["calls"]


def pages_needed(total, cap=0, overlap=0):
    """Pages a correct client asks for: the first brings S = min(PAGE_SIZE, cap) rows, each
    later one S - overlap new ones (the emulator's paging, see its doc), until totalRows."""
    size = min(PAGE_SIZE, cap) if cap else PAGE_SIZE
    return 1 + math.ceil(max(total - size, 0) / (size - min(overlap, size - 1)))


def assert_listed_once(m, emulator):
    """`ls KR` shows every image of the emulator exactly once."""
    listed = os.listdir(m.path / "KR")
    expected = emulator.images("KR")
    repeated = sorted({n for n in listed if listed.count(n) > 1}, key=int)
    assert not repeated, "listed more than once: %s" % repeated[:20]
    missing = sorted(set(expected) - set(listed), key=int)
    assert not missing, "%d images not listed, e.g. %s" % (len(missing), missing[:20])
    assert sorted(listed, key=int) == expected
    assert len(listed) == len(expected)
    return listed


# --- overlapping pages ----------------------------------------------------------------------

@pytest.mark.parametrize("cap", [0, 100])
def test_overlapping_pages_list_every_image_once(make_emulator, mount, cap):
    """Each page repeats the last 7 rows of the one before (images created during the
    listing): `ls` shows each of the 2,501 images once, after exactly the pages needed.
    With 100-row pages, counting repeated rows towards totalRows would stop 76 rows short;
    installing them would show names twice."""
    emulator = make_emulator(images=2500, page_cap=cap, overlap=7)
    m = mount(emulator=emulator)
    listed = assert_listed_once(m, emulator)
    assert len(listed) == 2501
    assert calls(emulator) == {REGIONS: 1, LIST: pages_needed(2501, cap, 7), DETAIL: 0}
    assert pages_needed(2501, 100, 7) == 27 and pages_needed(2501, 0, 7) == 3


def test_overlap_set_while_mounted(emulator, mount):
    """Overlap switched on through the control API between two listings (ttl=0: each `ls`
    lists anew): both show every image once; the repeated rows cost extra pages."""
    m = mount("ttl=0")
    emulator.put_image("KR", {**emulator.image("KR", "100001"), "serverImageNo": "150000"})
    assert_listed_once(m, emulator)
    first = calls(emulator)[LIST]
    emulator.paging(cap=5, overlap=2)
    assert_listed_once(m, emulator)
    assert calls(emulator)[LIST] - first == pages_needed(22, 5, 2) == 7


# --- capped pages ---------------------------------------------------------------------------

@pytest.mark.parametrize("cap,pages", [(300, 9), (999, 3), (1000, 3)])
def test_capped_pages_list_completely(make_emulator, mount, cap, pages):
    """A gateway that answers at most `cap` rows of the 1,000 asked: the short pages do not
    end the listing; it takes ceil(2501 / min(cap, 1000)) pages and no more."""
    emulator = make_emulator(images=2500, page_cap=cap)
    m = mount(emulator=emulator)
    assert_listed_once(m, emulator)
    assert pages == pages_needed(2501, cap)
    assert calls(emulator) == {REGIONS: 1, LIST: pages, DETAIL: 0}
    for request in emulator.requests():
        if request["action"] == LIST:
            assert "pageSize=%d" % PAGE_SIZE in request["target"]


def test_capped_listing_primes_the_images(make_emulator, mount):
    """Images that came on capped pages are read without a detail call."""
    emulator = make_emulator(images=1200, page_cap=250)
    m = mount(emulator=emulator)
    listed = assert_listed_once(m, emulator)
    for no in listed[::97] + listed[-3:]:
        assert read(m.path / "KR" / no / "serverImageNo") == no + "\n"
    assert calls(emulator) == {REGIONS: 1, LIST: 5, DETAIL: 0}


# --- Retry-After ----------------------------------------------------------------------------

def retried(emulator, action):
    """The failed request and its retry, from the emulator's request log."""
    requests = [r for r in emulator.requests() if r["action"] == action]
    assert [r["status"] for r in requests] in ([503, 200], [429, 200]), requests
    return requests


@pytest.mark.parametrize("kind", ["503", "429"])
def test_retry_after_seconds_is_honoured(emulator, mount, kind):
    """Retry-After: 2 on one failure: one retry, which comes no sooner than 2 s after the
    failure was answered (a retry on the backoff alone would come after 0.25 s at most)."""
    m = mount("retries=3")
    os.stat(m.path / "KR")
    emulator.reset()
    emulator.fault(kind, action=DETAIL, count=1, retry_after=2)
    assert read(m.path / "KR" / "100003" / "osType").strip()
    assert emulator.counts()["calls_by_status"] == {"%s %s" % (DETAIL, kind): 1,
                                                    "%s 200" % DETAIL: 1}
    failed, retry = retried(emulator, DETAIL)
    assert failed["retry_after"] == "2"
    assert retry["received"] - failed["answered"] >= 2


@pytest.mark.parametrize("kind", ["503", "429"])
def test_retry_after_http_date_is_honoured(emulator, mount, kind):
    """Retry-After as an HTTP-date ~2 s ahead (whole seconds, rounded up by the emulator):
    one retry, which comes no sooner than that date."""
    m = mount("retries=3")
    os.stat(m.path / "KR")
    emulator.reset()
    emulator.fault(kind, action=DETAIL, count=1, retry_after=2, retry_after_date=True)
    assert read(m.path / "KR" / "100003" / "osType").strip()
    assert emulator.counts()["calls_by_status"] == {"%s %s" % (DETAIL, kind): 1,
                                                    "%s 200" % DETAIL: 1}
    failed, retry = retried(emulator, DETAIL)
    date = email.utils.parsedate_to_datetime(failed["retry_after"]).timestamp()
    assert date >= failed["received"] + 2
    assert retry["received"] >= date, "retried %.2f s before the Retry-After date" % (
        date - retry["received"])


def test_retry_after_on_a_listing_page(make_emulator, mount):
    """A 503 with Retry-After on the second page of a capped listing: that page is asked
    again, after the wait, and the listing is complete."""
    emulator = make_emulator(images=600, page_cap=250)
    m = mount("retries=3", emulator=emulator)
    emulator.fault("503", action=LIST, count=1, retry_after=1, match="pageNo=2&")
    assert_listed_once(m, emulator)
    assert emulator.counts()["calls_by_status"] == {"%s 503" % LIST: 1, "%s 200" % LIST: 3,
                                                    "%s 200" % REGIONS: 1}
    failed, retry = [r for r in emulator.requests() if "pageNo=2&" in r["target"]]
    assert (failed["status"], failed["retry_after"], retry["status"]) == (503, "1", 200)
    assert retry["received"] - failed["answered"] >= 1
