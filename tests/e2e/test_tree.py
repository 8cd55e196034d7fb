# SPDX-License-Identifier: MIT
"""The tree ncloudfs shows, checked node by node against what the emulator serves.

Expectations are derived from the emulator's JSON (README "The tree"): an object is a
directory of its keys, an array a directory of 0..n-1, a string/number/boolean a file
holding the value and a newline, null an empty file, a common code {code, codeName} a
file holding the code with the codeName in the xattr user.ncp.codeName.
"""

import copy
import errno
import json
import os
import re
import shutil
import stat
import subprocess
from datetime import datetime

import pytest
from expect import expected_nodes

XATTR = "user.ncp.codeName"
GUIDE_IMAGE = ("KR", "3135")
GUIDE_EPOCH = 1750381179  # 2025-06-20T09:59:39+0900


# ---- expectations from the emulator's JSON ------------------------------------------

def create_epoch(image):
    """Return the image's createDate as epoch seconds."""
    return int(datetime.strptime(image["createDate"], "%Y-%m-%dT%H:%M:%S%z").timestamp())


def assert_errno(expected, func, *args):
    """Assert that func(*args) raises OSError with the given errno."""
    with pytest.raises(OSError) as info:
        func(*args)
    assert info.value.errno == expected, "%s%r: %s, expected %s" % (
        func.__name__, args, errno.errorcode.get(info.value.errno), errno.errorcode[expected])


def assert_image_matches(root, image):
    """Walk the expected tree of image and check every node under root: kind, names, bytes,
    size, mode, owner, mtime and codeName xattr; return the number of nodes checked."""
    mtime = create_epoch(image)
    nodes = expected_nodes(image)
    for rel, (kind, data, codename) in nodes.items():
        path = root / rel if rel else root
        st = os.lstat(path)
        where = "%s: " % path
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), where + "owner"
        assert st.st_mtime == mtime, where + "mtime"
        if kind == "dir":
            assert stat.S_ISDIR(st.st_mode), where + "not a directory"
            assert stat.S_IMODE(st.st_mode) == 0o555, where + oct(st.st_mode)
            assert sorted(os.listdir(path)) == data, where + "entries"
            continue
        assert stat.S_ISREG(st.st_mode), where + "not a regular file"
        assert stat.S_IMODE(st.st_mode) == 0o444, where + oct(st.st_mode)
        content = path.read_bytes()
        assert content == data, where + "content"
        assert st.st_size == len(content), where + "st_size"
        if codename is None:
            assert_errno(errno.ENODATA, os.getxattr, path, XATTR)
        else:
            assert os.getxattr(path, XATTR) == codename.encode(), where + "codeName"
    return len(nodes)


def generated_no(region, k):
    """Return the serverImageNo of generated image index k in region."""
    return str({"KR": 100001, "SGN": 200001, "JPN": 300001}[region] + k)


# ---- listings -------------------------------------------------------------------------

def test_root_lists_exactly_the_regions_of_getregionlist(emulator, mount):
    """`ls MNT` shows exactly the regionCodes getRegionList answers."""
    answer = emulator.call("getRegionList").json()["getRegionListResponse"]
    regions = sorted(r["regionCode"] for r in answer["regionList"])
    assert regions == ["JPN", "KR", "SGN"]
    m = mount()
    out = subprocess.run(["ls", str(m.path)], capture_output=True, text=True, check=True)
    assert sorted(out.stdout.split()) == regions
    assert sorted(os.listdir(m.path)) == regions


@pytest.mark.emulator(images=1500)
def test_region_lists_every_image_over_two_pages(emulator, mount):
    """`ls MNT/KR` shows exactly the emulator's KR images, across pages of 1000."""
    expected = emulator.images("KR")
    assert len(expected) == 1501
    m = mount()
    out = subprocess.run(["ls", str(m.path / "KR")], capture_output=True, text=True, check=True)
    names = out.stdout.split()
    assert len(names) == len(set(names)) == len(expected)
    assert set(names) == set(expected)
    assert emulator.counts()["calls"]["getServerImageList"] >= 2


def test_small_regions_list_their_images(emulator, mount):
    """SGN and JPN list exactly their five images each."""
    m = mount()
    for region in ("SGN", "JPN"):
        expected = emulator.images(region)
        assert len(expected) == 5
        assert sorted(os.listdir(m.path / region)) == sorted(expected)


# ---- every node of an image -----------------------------------------------------------

def test_guide_image_every_node_matches_the_json(emulator, mount):
    """Every file and directory of KR/3135 equals the emulator's JSON, node by node."""
    image = emulator.image(*GUIDE_IMAGE)
    assert create_epoch(image) == GUIDE_EPOCH
    m = mount()
    root = m.path / "KR" / "3135"
    assert assert_image_matches(root, image) > 20
    # A few spot checks spelled out, in case the derivation above were wrong too.
    assert (root / "osType").read_bytes() == b"UBUNTU\n"
    assert os.getxattr(root / "osType", XATTR) == b"UBUNTU"
    assert (root / "blockStorageMappingList" / "0" / "iops").read_bytes() == b"100\n"
    assert (root / "blockStorageMappingList" / "0" / "blockStorageSize").read_bytes() \
        == b"10737418240\n"
    assert (root / "blockStorageMappingList" / "0" / "isEncryptedVolume").read_bytes() \
        == b"false\n"
    assert os.getxattr(root / "serverImageStatus", XATTR) == b"NSI CREATED state"
    assert os.listdir(root / "sharedLoginIdList") == []
    assert os.stat(root).st_mtime == GUIDE_EPOCH


@pytest.mark.parametrize("region,k", [
    ("KR", 1),    # description with spaces and punctuation
    ("KR", 3),    # non-ASCII name
    ("KR", 4),    # numbers as strings, null description
    ("KR", 6),    # no description, no blockStorageMappingList
    ("KR", 13),   # no description, no sharedLoginIdList
    ("KR", 14),   # numbers as strings and a non-ASCII name
    ("KR", 19),   # numbers as strings
    ("SGN", 3),   # non-ASCII name (Vietnamese)
    ("JPN", 3),   # non-ASCII name (Japanese)
    ("JPN", 4),   # numbers as strings, null description
])
def test_generated_image_every_node_matches_the_json(emulator, mount, region, k):
    """Every node of a generated image (with its quirks) equals the emulator's JSON."""
    no = generated_no(region, k)
    image = emulator.image(region, no)
    m = mount()
    assert assert_image_matches(m.path / region / no, image) > 10


def test_numbers_served_as_strings_are_shown_verbatim(emulator, mount):
    """Numbers the API sent as JSON strings read back as that exact string."""
    no = generated_no("KR", 4)
    image = emulator.image("KR", no)
    mapping = image["blockStorageMappingList"][0]
    assert isinstance(mapping["iops"], str) and isinstance(mapping["blockStorageSize"], str)
    m = mount()
    for key in ("order", "iops", "throughput", "blockStorageSize",
                "blockStorageSnapshotInstanceNo"):
        path = m.path / "KR" / no / "blockStorageMappingList" / "0" / key
        assert path.read_text() == mapping[key] + "\n"
    assert json.loads((m.path / "KR" / (no + ".json")).read_text()) == image


def test_null_field_is_an_empty_file(emulator, mount):
    """A null field is an empty file of size 0 (and null in <no>.json)."""
    no = generated_no("KR", 4)
    image = emulator.image("KR", no)
    assert image["serverImageDescription"] is None
    m = mount()
    path = m.path / "KR" / no / "serverImageDescription"
    assert path.read_bytes() == b""
    assert os.stat(path).st_size == 0
    assert stat.S_ISREG(os.stat(path).st_mode)
    assert json.loads((m.path / "KR" / (no + ".json")).read_text())["serverImageDescription"] \
        is None


@pytest.mark.parametrize("k", [6, 13])
def test_missing_fields_answer_enoent(emulator, mount, k):
    """Fields absent from an image's JSON answer ENOENT and are not listed."""
    no = generated_no("KR", k)
    image = emulator.image("KR", no)
    optional = {"serverImageDescription", "blockStorageMappingList", "sharedLoginIdList"}
    missing = optional - set(image)
    assert len(missing) == 2
    m = mount()
    root = m.path / "KR" / no
    assert set(os.listdir(root)) == set(image)
    for name in missing:
        assert_errno(errno.ENOENT, os.stat, root / name)
    assert (root / "osType").read_text() == image["osType"]["code"] + "\n"


def test_non_ascii_names_read_back_as_utf8(emulator, mount):
    """Non-ASCII strings read back byte for byte as UTF-8, with exact sizes."""
    m = mount()
    for region, expected_prefix in (("KR", "웹서버"), ("SGN", "máy-chủ"), ("JPN", "画像")):
        no = generated_no(region, 3)
        name = emulator.image(region, no)["serverImageName"]
        assert name.startswith(expected_prefix)
        path = m.path / region / no / "serverImageName"
        assert path.read_bytes() == (name + "\n").encode("utf-8")
        assert os.stat(path).st_size == len((name + "\n").encode("utf-8"))


def test_strings_are_shown_verbatim_and_integers_exactly(emulator, mount):
    """Odd strings are verbatim; integers beyond double precision are exact; nesting works."""
    image = copy.deepcopy(emulator.image(*GUIDE_IMAGE))
    image.update({
        "serverImageNo": "4243",
        "padded": "  two  spaces  ",
        "multiline": "line one\nline two",
        "empty": "",
        "leadingZeros": "0010",
        "numberish": "1e3",
        "truthy": "true",
        "nullish": "null",
        "tab": "\t",
        "quoted": "\"quoted\" \\ back",
        "negative": -42,
        "zero": 0,
        "big": 9007199254740993,
        "largest": 9223372036854775807,
        "smallest": -9223372036854775808,
        "yes": True,
        "nested": {"deep": {"list": [[1, "2"], [], [None, False]]}, "emptyObject": {}},
        "codeWithNullName": {"code": "X", "codeName": None},
        "notACode": {"code": "X", "codeName": "Y", "extra": 1},
    })
    emulator.put_image("KR", image)
    m = mount()
    root = m.path / "KR" / "4243"
    assert assert_image_matches(root, image) > 40
    assert (root / "big").read_text() == "9007199254740993\n"
    assert (root / "multiline").read_text() == "line one\nline two\n"
    assert (root / "nested" / "deep" / "list" / "0" / "1").read_text() == "2\n"
    assert (root / "notACode" / "extra").read_text() == "1\n"
    assert json.loads((m.path / "KR" / "4243.json").read_text()) == image


def test_real_numbers_read_as_the_api_printed_them(emulator, mount):
    """Real numbers read back as the API printed them (Python's json text here)."""
    image = copy.deepcopy(emulator.image(*GUIDE_IMAGE))
    reals = {"half": 1.5, "tenth": 0.1, "hundred": 100.0, "ten": 10.0, "one": 1.0,
             "tiny": 2.5e-07, "huge": 1e+300, "third": 1 / 3, "negative": -123456.0}
    image.update(serverImageNo="4244", reals=reals)
    emulator.put_image("KR", image)
    m = mount()
    root = m.path / "KR" / "4244" / "reals"
    got = {k: (root / k).read_text() for k in reals}
    assert got == {k: json.dumps(v) + "\n" for k, v in reals.items()}
    assert json.loads((m.path / "KR" / "4244.json").read_text()) == image


# ---- modes, owner, times --------------------------------------------------------------

def test_modes_owner_and_mtime_of_every_node(emulator, mount):
    """Files 0444, directories 0555, owned by the mounting user, mtime = createDate."""
    m = mount()
    for dirpath, dirnames, filenames in os.walk(m.path / "KR" / "3135"):
        for name in dirnames + filenames + [""]:
            st = os.lstat(os.path.join(dirpath, name))
            assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
            assert st.st_mtime == GUIDE_EPOCH
            assert stat.S_IMODE(st.st_mode) == (0o555 if stat.S_ISDIR(st.st_mode) else 0o444)
    for path in (m.path, m.path / "KR"):
        st = os.stat(path)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o555
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())


# ---- <no>.json ------------------------------------------------------------------------

def test_image_json_opens_but_is_not_listed(emulator, mount):
    """MNT/KR/3135.json is not in the listing, opens, and json.load equals the image."""
    image = emulator.image(*GUIDE_IMAGE)
    m = mount()
    region = m.path / "KR"
    names = os.listdir(region)
    assert "3135" in names
    assert not [n for n in names if n.endswith(".json")]
    path = region / "3135.json"
    st = os.stat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    data = path.read_bytes()
    assert st.st_size == len(data)
    with open(path) as f:
        assert json.load(f) == image
    assert "3135.json" not in os.listdir(region)


@pytest.mark.skipif(not shutil.which("jq"), reason="jq is not installed")
def test_jq_reads_the_image_json(emulator, mount):
    """`jq .osType MNT/KR/3135.json` gives the common code object."""
    image = emulator.image(*GUIDE_IMAGE)
    m = mount()
    out = subprocess.run(["jq", ".osType", str(m.path / "KR" / "3135.json")],
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == {"code": "UBUNTU", "codeName": "UBUNTU"} == image["osType"]
    out = subprocess.run(["jq", "-r", ".blockStorageMappingList[0].iops",
                          str(m.path / "KR" / "3135.json")],
                         capture_output=True, text=True, check=True)
    assert out.stdout == "100\n"


# ---- direct lookup --------------------------------------------------------------------

def test_unlisted_image_is_found_by_direct_lookup(emulator, mount):
    """An image added after the listing was read is not listed but reads by its number."""
    m = mount("ttl=3600")
    region = m.path / "KR"
    before = sorted(os.listdir(region))
    assert before == sorted(emulator.images("KR"))
    image = copy.deepcopy(emulator.image(*GUIDE_IMAGE))
    image.update(serverImageNo="4242", serverImageName="added-later",
                 osType={"code": "CENTOS", "codeName": "CentOS"})
    emulator.put_image("KR", image)
    assert "4242" in emulator.images("KR")
    assert sorted(os.listdir(region)) == before  # the listing is still the cached one
    emulator.reset()
    assert (region / "4242" / "osType").read_text() == "CENTOS\n"
    assert os.getxattr(region / "4242" / "osType", XATTR) == b"CentOS"
    assert (region / "4242" / "serverImageName").read_text() == "added-later\n"
    assert json.loads((region / "4242.json").read_text()) == image
    assert emulator.counts()["calls"]["getServerImageDetail"] >= 1


def test_direct_lookup_without_any_listing(emulator, mount):
    """An image reads by its number before any listing (cat MNT/KR/<no>/osType)."""
    m = mount()
    no = generated_no("KR", 7)
    image = emulator.image("KR", no)
    assert (m.path / "KR" / no / "osType").read_text() == image["osType"]["code"] + "\n"
    assert emulator.counts()["calls"]["getServerImageList"] == 0


# ---- names that cannot exist ----------------------------------------------------------

def test_names_that_cannot_exist_answer_enoent_without_asking(emulator, mount):
    """Non-canonical numbers, unknown regions and fields answer ENOENT with no API call."""
    m = mount()
    kr = m.path / "KR"
    image = kr / "3135"
    assert (image / "osType").read_text() == "UBUNTU\n"  # regions and 3135 now fetched
    emulator.reset()
    for path in (kr / "abc", kr / "0003135", kr / "+3135", kr / "-3135", kr / "3135 ",
                 kr / " 3135", kr / "3135abc", kr / "0", kr / "12345678901234567890",
                 kr / "abc.json", kr / "03135.json", kr / ".json",
                 image / "noSuchField", image / "3135.json", image / "osTyp",
                 image / "OSTYPE", image / "blockStorageMappingList" / "1",
                 image / "blockStorageMappingList" / "01",
                 image / "blockStorageMappingList" / "-1",
                 image / "blockStorageMappingList" / "0" / "noSuchField",
                 image / "sharedLoginIdList" / "0",
                 m.path / "XX", m.path / "kr", m.path / "MARS.json", m.path / "kr.json",
                 m.path / "3135"):
        assert_errno(errno.ENOENT, os.stat, path)
    calls = emulator.counts()["calls"]
    assert calls["getServerImageDetail"] == 0 and calls["getServerImageList"] == 0, calls


def test_unknown_region_answers_enoent(emulator, mount):
    """An unknown region answers ENOENT for itself and anything under it."""
    m = mount()
    assert_errno(errno.ENOENT, os.stat, m.path / "XX")
    assert_errno(errno.ENOENT, os.stat, m.path / "XX" / "3135")
    assert_errno(errno.ENOENT, os.listdir, m.path / "XX")


def test_below_a_file_answers_enotdir(emulator, mount):
    """A path through a file answers ENOTDIR."""
    m = mount()
    assert_errno(errno.ENOTDIR, os.stat, m.path / "KR" / "3135" / "osType" / "code")
    assert_errno(errno.ENOTDIR, os.stat, m.path / "KR" / "3135.json" / "osType")


def test_names_over_255_bytes_answer_enametoolong(emulator, mount):
    """A 256-byte name answers ENAMETOOLONG at every level; 255 bytes is just ENOENT."""
    m = mount()
    image = m.path / "KR" / "3135"
    for parent in (m.path, m.path / "KR", image, image / "blockStorageMappingList" / "0"):
        assert_errno(errno.ENAMETOOLONG, os.stat, parent / ("1" * 256))
        assert_errno(errno.ENAMETOOLONG, os.stat, parent / ("a" * 256))
        assert_errno(errno.ENOENT, os.stat, parent / ("a" * 255))
    assert_errno(errno.ENAMETOOLONG, os.stat, m.path / "KR" / ("1" * 251 + ".json"))


# ---- statfs and xattrs ----------------------------------------------------------------

def test_statfs_answers(emulator, mount):
    """statvfs works anywhere in the mount, with f_namemax 255 and read-only flags."""
    m = mount()
    for path in (m.path, m.path / "KR", m.path / "KR" / "3135" / "osType"):
        sv = os.statvfs(path)
        assert sv.f_namemax == 255
        assert sv.f_flag & os.ST_RDONLY


def test_xattrs_of_codes_plain_files_and_directories(emulator, mount):
    """listxattr shows user.ncp.codeName only on common codes; missing attributes are ENODATA."""
    m = mount()
    image = m.path / "KR" / "3135"
    assert XATTR in os.listxattr(image / "osType")
    assert os.getxattr(image / "osType", XATTR) == b"UBUNTU"
    assert os.listxattr(image / "serverImageName") == []
    assert_errno(errno.ENODATA, os.getxattr, image / "serverImageName", XATTR)
    assert_errno(errno.ENODATA, os.getxattr, image / "osType", "user.ncp.nothing")
    assert_errno(errno.ENODATA, os.getxattr, image / "osType", "user.codeName")
    os.listdir(m.path / "KR")
    # the root, a region and an image show the age of their answer (test_fresh.py)
    for path in (m.path, m.path / "KR", image):
        assert os.listxattr(path) == ["user.ncp.fetched", "user.ncp.state"]
        assert_errno(errno.ENODATA, os.getxattr, path, XATTR)
    for path in (image / "blockStorageMappingList", m.path / "KR" / "3135.json"):
        assert os.listxattr(path) == []
        assert_errno(errno.ENODATA, os.getxattr, path, XATTR)


def test_keys_that_cannot_be_names_are_left_out_with_a_warning(emulator, mount):
    """Keys that are empty, '.', '..', contain '/' or exceed 255 bytes are left out, warned."""
    image = copy.deepcopy(emulator.image(*GUIDE_IMAGE))
    bad = ["", ".", "..", "a/b", "k" * 256, "웹" * 86]  # the last is 258 bytes of UTF-8
    good = ["k" * 255, "웹" * 85, "dot.inside", "..."]
    image.update({"serverImageNo": "4245", **{k: "bad" for k in bad},
                  **{k: "good" for k in good}})
    emulator.put_image("KR", image)
    m = mount()
    m.allow_log(r"warning: .*KR/4245: left out 6 key")
    root = m.path / "KR" / "4245"
    names = os.listdir(root)
    expected = sorted(k for k in image if k not in bad)
    assert sorted(names) == expected
    for k in good:
        assert (root / k).read_text() == "good\n"
    assert (root / "osType").read_text() == "UBUNTU\n"
    assert re.search(r"warning: .*KR/4245: left out 6 key", m.log()), m.log()


@pytest.mark.parametrize("created", ["2025-06-20T09:59:39+0900", "2025-06-20T00:59:39+0000",
                                     "2025-06-19T19:29:39-0530", "1999-12-31T23:59:59+0900"])
def test_mtime_follows_create_date_and_its_offset(emulator, mount, created):
    """The mtime of every node is createDate, its UTC offset honoured."""
    image = copy.deepcopy(emulator.image(*GUIDE_IMAGE))
    image.update(serverImageNo="4246", createDate=created)
    emulator.put_image("KR", image)
    m = mount()
    assert assert_image_matches(m.path / "KR" / "4246", image) > 20
    if created.startswith("2025"):
        assert os.stat(m.path / "KR" / "4246" / "osType").st_mtime == GUIDE_EPOCH


def test_images_read_from_the_listing_match_the_json(emulator, mount):
    """After `ls MNT/KR`, every listed image's tree (built from list rows) equals its JSON."""
    m = mount()
    listed = sorted(os.listdir(m.path / "KR"))
    assert listed == sorted(emulator.images("KR"))
    emulator.reset()
    for no in listed:
        assert_image_matches(m.path / "KR" / no, emulator.image("KR", no))
    assert emulator.counts()["calls"]["getServerImageDetail"] == 0


def test_large_values_and_long_arrays_read_exactly(emulator, mount):
    """A 300 KB string, a 3000-entry array and the big <no>.json read exactly, at any offset."""
    image = copy.deepcopy(emulator.image(*GUIDE_IMAGE))
    long_text = "".join("line %06d ünïcödé\n" % i for i in range(15000))  # ~330 KB
    image.update(serverImageNo="4247", longText=long_text,
                 sharedLoginIdList=["user%d@example.com" % i for i in range(3000)])
    emulator.put_image("KR", image)
    m = mount()
    root = m.path / "KR" / "4247"
    data = (long_text + "\n").encode()
    path = root / "longText"
    assert os.stat(path).st_size == len(data)
    assert path.read_bytes() == data
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset in (0, 1, 4095, 4096, 131071, 131072, len(data) - 1, len(data)):
            assert os.pread(fd, 7000, offset) == data[offset:offset + 7000], offset
        assert os.pread(fd, 10, len(data) + 100) == b""
    finally:
        os.close(fd)
    names = os.listdir(root / "sharedLoginIdList")
    assert sorted(names, key=int) == [str(i) for i in range(3000)]
    assert (root / "sharedLoginIdList" / "2999").read_text() == "user2999@example.com\n"
    text = (m.path / "KR" / "4247.json").read_bytes()
    assert os.stat(m.path / "KR" / "4247.json").st_size == len(text)
    assert json.loads(text) == image
