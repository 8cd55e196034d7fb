# SPDX-License-Identifier: MIT
"""Caching end to end: what each access costs in API calls and connections, TTLs, negative
caching, names that cannot exist, single flight and connection reuse (emulator counters)."""

import copy
import errno
import os
import threading
import time

import pytest
from expect import read, errno_of, wait_until

DETAIL, LIST, REGIONS = "getServerImageDetail", "getServerImageList", "getRegionList"


def calls(emulator):
    """The emulator's API call counts by action."""
    return emulator.counts()["calls"]


def test_mounting_makes_one_call_and_the_root_costs_nothing_more(emulator, mount):
    """Mounting checks the keys with one getRegionList call on one connection; stat and
    listing the root then make no call at all."""
    m = mount()
    counts = emulator.counts()
    assert counts["calls"] == {REGIONS: 1, LIST: 0, DETAIL: 0}
    assert counts["api_connections"] == 1
    st = os.stat(m.path)
    assert st.st_mode & 0o777 == 0o555
    assert sorted(os.listdir(m.path)) == ["JPN", "KR", "SGN"]
    counts = emulator.counts()
    assert counts["calls"] == {REGIONS: 1, LIST: 0, DETAIL: 0}
    assert counts["api_connections"] == 1


def test_delay_connect_mounts_without_a_call(emulator, mount):
    """-o delay_connect: mounting and stat of the root make no API call, no connection."""
    m = mount("delay_connect")
    st = os.stat(m.path)
    assert st.st_mode & 0o777 == 0o555
    counts = emulator.counts()
    assert counts["calls"] == {REGIONS: 0, LIST: 0, DETAIL: 0}
    assert counts["api_connections"] == 0


def test_first_read_fetches_lazily_and_once(emulator, mount):
    """The first read asks for the region list once and the one image; a second read asks nothing."""
    m = mount()
    assert read(m.path / "KR" / "3135" / "osType") == "UBUNTU\n"
    first = calls(emulator)
    assert first[REGIONS] == 1
    assert (first[DETAIL], first[LIST]) in ((1, 0), (0, 1)), first
    assert read(m.path / "KR" / "3135" / "osType") == "UBUNTU\n"
    assert read(m.path / "KR" / "3135" / "serverImageName") == "test-img\n"
    assert calls(emulator) == first


@pytest.mark.parametrize("images, pages", [(20, 1), (1200, 2)])
def test_listing_primes_every_listed_image(make_emulator, mount, images, pages):
    """After `ls KR`, reading every listed image's osType makes no detail call at all."""
    emulator = make_emulator(images=images)
    m = mount(emulator=emulator)
    listed = os.listdir(m.path / "KR")
    assert sorted(listed, key=int) == emulator.images("KR")
    for no in listed:
        assert read(m.path / "KR" / no / "osType").strip()
    assert calls(emulator) == {REGIONS: 1, LIST: pages, DETAIL: 0}


def test_ttl_expiry_fetches_again(emulator, mount):
    """With ttl=1, a read after the TTL passed asks the API again: for the image at once, and
    for the region list in the background (the read does not wait for that one)."""
    m = mount("ttl=1")
    path = m.path / "KR" / "100002" / "osType"
    value = read(path)
    before = calls(emulator)
    assert before[DETAIL] == 1
    time.sleep(1.3)
    assert read(path) == value
    assert calls(emulator)[DETAIL] == 2
    wait_until(lambda: calls(emulator)[REGIONS] >= 2, "the region list's refresh")
    assert calls(emulator) == {REGIONS: 2, LIST: 0, DETAIL: 2}


def test_changed_code_of_same_length_shows_after_ttl(emulator, mount):
    """UBUNTU -> CENTOS (same size) shows after the TTL: no page cache keeps the old bytes."""
    m = mount("ttl=1")
    path = m.path / "KR" / "3135" / "osType"
    assert read(path) == "UBUNTU\n"
    assert read(path) == "UBUNTU\n"  # now surely in the kernel's caches
    emulator.set_field("KR", "3135", ["osType", "code"], "CENTOS")
    time.sleep(1.3)
    assert read(path) == "CENTOS\n"
    with open(m.path / "KR" / "3135.json") as f:
        assert '"CENTOS"' in f.read()


def test_descriptor_opened_before_a_change_keeps_reading(emulator, mount):
    """A descriptor opened before a change still reads (no ESTALE) after the data moved on."""
    m = mount("ttl=1")
    path = m.path / "KR" / "3135" / "osType"
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 100, 0) == b"UBUNTU\n"
        emulator.set_field("KR", "3135", ["osType", "code"], "CENTOS")
        time.sleep(1.3)
        assert read(path) == "CENTOS\n"
        assert os.pread(fd, 100, 0) in (b"CENTOS\n", b"UBUNTU\n")
    finally:
        os.close(fd)


def test_renamed_image_shows_after_ttl(emulator, mount):
    """A changed serverImageName shows after the TTL, in the field and in <no>.json."""
    m = mount("ttl=1")
    image = m.path / "KR" / "100003"
    old = read(image / "serverImageName")
    assert old == "img-100003\n"
    emulator.set_field("KR", "100003", ["serverImageName"], "renamed-image")
    time.sleep(1.3)
    assert read(image / "serverImageName") == "renamed-image\n"
    with open(m.path / "KR" / "100003.json") as f:
        assert '"renamed-image"' in f.read()


def test_deleted_image_is_gone_after_ttl(emulator, mount):
    """A deleted image answers ENOENT after the TTL and leaves `ls KR`."""
    m = mount("ttl=1")
    region = m.path / "KR"
    assert "100005" in os.listdir(region)
    assert read(region / "100005" / "serverImageNo") == "100005\n"
    emulator.delete_image("KR", "100005")
    time.sleep(1.3)
    assert errno_of(os.stat, region / "100005") == errno.ENOENT
    assert errno_of(read, region / "100005" / "osType") == errno.ENOENT
    assert "100005" not in os.listdir(region)
    assert len(os.listdir(region)) == len(emulator.images("KR"))


def test_deleted_image_leaves_the_listing_first(emulator, mount):
    """After the TTL, `ls KR` drops a deleted image even before anyone looks it up."""
    m = mount("ttl=1")
    region = m.path / "KR"
    assert "100005" in os.listdir(region)
    emulator.delete_image("KR", "100005")
    time.sleep(1.3)
    assert "100005" not in os.listdir(region)
    assert errno_of(os.stat, region / "100005") == errno.ENOENT


def test_new_image_appears_after_ttl(emulator, mount):
    """A new image shows in `ls KR` after the TTL, and reading it needs no detail call."""
    m = mount("ttl=1")
    region = m.path / "KR"
    assert "100777" not in os.listdir(region)
    image = copy.deepcopy(emulator.image("KR", "100001"))
    image.update(serverImageNo="100777", serverImageName="brand-new")
    emulator.put_image("KR", image)
    time.sleep(1.3)
    assert "100777" in os.listdir(region)
    before = calls(emulator)
    assert read(region / "100777" / "serverImageName") == "brand-new\n"
    assert calls(emulator)[DETAIL] == before[DETAIL]


def test_within_ttl_old_value_is_served_without_a_call(emulator, mount):
    """Before the TTL passes, the old value is served and no API call is made."""
    m = mount("ttl=30")
    region = m.path / "KR"
    assert read(region / "3135" / "osType") == "UBUNTU\n"
    names = os.listdir(region)
    before = calls(emulator)
    emulator.set_field("KR", "3135", ["osType", "code"], "CENTOS")
    emulator.delete_image("KR", "100005")
    time.sleep(1.3)
    assert read(region / "3135" / "osType") == "UBUNTU\n"
    assert os.listdir(region) == names
    assert read(region / "100005" / "serverImageNo") == "100005\n"
    assert calls(emulator) == before


def test_ttl_zero_fetches_on_every_read(emulator, mount):
    """With ttl=0 every read asks the API, and a change shows on the very next read."""
    m = mount("ttl=0")
    path = m.path / "KR" / "3135" / "osType"
    seen = calls(emulator)[DETAIL]
    for _ in range(3):
        assert read(path) == "UBUNTU\n"
        now = calls(emulator)[DETAIL]
        assert now > seen
        seen = now
    emulator.set_field("KR", "3135", ["osType", "code"], "CENTOS")
    assert read(path) == "CENTOS\n"
    assert calls(emulator)[DETAIL] > seen


@pytest.mark.parametrize("shape", ["400", "empty"])
def test_negative_caching(emulator, mount, shape):
    """A missing image is asked for once per negative_ttl, whatever shape the API says it in."""
    emulator.notfound(shape)
    m = mount("negative_ttl=2")
    missing = m.path / "KR" / "999999"
    assert errno_of(os.stat, missing) == errno.ENOENT
    assert errno_of(read, missing / "osType") == errno.ENOENT
    assert errno_of(os.stat, m.path / "KR" / "999999.json") == errno.ENOENT
    assert calls(emulator)[DETAIL] == 1
    time.sleep(2.3)
    assert errno_of(os.stat, missing) == errno.ENOENT
    assert calls(emulator)[DETAIL] == 2


def test_negative_entry_ends_when_the_image_appears(emulator, mount):
    """An image created after a miss is seen once negative_ttl passed."""
    m = mount("negative_ttl=1")
    missing = m.path / "KR" / "999999"
    assert errno_of(os.stat, missing) == errno.ENOENT
    image = copy.deepcopy(emulator.image("KR", "100001"))
    image["serverImageNo"] = "999999"
    emulator.put_image("KR", image)
    time.sleep(1.3)
    assert read(missing / "serverImageNo") == "999999\n"
    assert calls(emulator)[DETAIL] == 2


def test_names_that_cannot_exist_make_no_call(emulator, mount):
    """Non-canonical image names, unknown regions and unknown fields answer ENOENT at no cost."""
    m = mount()
    assert read(m.path / "KR" / "3135" / "osType") == "UBUNTU\n"
    before = calls(emulator)
    for name in ("KR/abc", "KR/0003135", "KR/+3135", "KR/-3135", "KR/3135.0", "KR/0",
                 "KR/abc.json", "KR/03135.json", "ZZ", "kr", "ZZ/3135",
                 "KR/3135/noSuchField", "KR/3135/blockStorageMappingList/9"):
        assert errno_of(os.stat, m.path / name) == errno.ENOENT, name
    assert errno_of(os.stat, m.path / "KR/3135/osType/x") == errno.ENOTDIR
    assert calls(emulator) == before
    assert emulator.counts()["calls"] == before


def test_single_flight_for_one_uncached_image(emulator, mount):
    """Sixteen concurrent readers of one uncached image cause exactly one detail call."""
    m = mount()
    os.stat(m.path / "KR")  # the region list, so only the image is uncached
    emulator.latency(0.3, DETAIL)
    # Two names reach the daemon as separate lookups: <no> and <no>.json.
    paths = [m.path / "KR" / "100007" / "osType", m.path / "KR" / "100007.json",
             m.path / "KR" / "100007" / "serverImageName", m.path / "KR" / "100007.json"] * 4
    barrier = threading.Barrier(len(paths))
    results = [None] * len(paths)

    def reader(i):
        """Wait for everyone, then read one path."""
        barrier.wait()
        try:
            results[i] = read(paths[i])
        except OSError as e:
            results[i] = e

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(len(paths))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(isinstance(r, str) and r for r in results), results
    assert calls(emulator) == {REGIONS: 1, LIST: 0, DETAIL: 1}


@pytest.mark.emulator(images=120)
def test_sequential_reads_reuse_connections(emulator, mount):
    """A hundred reads of distinct uncached images go over at most four connections."""
    m = mount()
    for no in range(100001, 100101):
        assert read(m.path / "KR" / str(no) / "serverImageNo") == "%d\n" % no
    counts = emulator.counts()
    assert counts["calls"] == {REGIONS: 1, LIST: 0, DETAIL: 100}
    assert counts["api_connections"] <= 4, counts
