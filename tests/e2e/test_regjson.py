# SPDX-License-Identifier: MIT
"""<region>.json: a region's images as one JSON array for jq, in listing order, each image
as the API gave it; found by name, not listed; exact size; made from the cached listing."""

import errno
import json
import os
import subprocess
import time

import pytest

import emu
from expect import errno_of, read

REGIONS, LIST, DETAIL = "getRegionList", "getServerImageList", "getServerImageDetail"


def api_listing(e, region):
    """Every image of region as getServerImageList gives them, all pages, in order."""
    rows, page = [], 1
    while True:
        r = e.call(LIST, {"regionCode": region, "pageNo": str(page), "pageSize": "1000"})
        body = r.json()["getServerImageListResponse"]
        rows += body.get("serverImageList", [])
        if not body.get("serverImageList") or len(rows) >= int(body["totalRows"]):
            return rows
        page += 1


def read_bytes(path):
    """The whole file, in bytes."""
    with open(path, "rb") as f:
        return f.read()


@pytest.mark.emulator(images=1500)
def test_region_json_is_the_listing(emulator, mount):
    """KR.json parses to exactly the API's listing (two pages here), its size is exact, and
    it is found by name but not listed."""
    m = mount()
    data = read_bytes(m.path / "KR.json")
    assert os.stat(m.path / "KR.json").st_size == len(data)
    assert json.loads(data) == api_listing(emulator, "KR")
    assert data.endswith(b"\n]\n")
    assert "KR.json" not in os.listdir(m.path)
    assert errno_of(os.stat, m.path / "MARS.json") == errno.ENOENT
    assert errno_of(os.listdir, m.path / "KR.json") == errno.ENOTDIR


def test_region_json_costs_no_call_when_the_listing_is_fresh(emulator, mount):
    """After ls of the region, KR.json is made from the cached listing: no API call."""
    m = mount()
    os.listdir(m.path / "KR")
    before = emulator.counts()["calls"]
    assert json.loads(read(m.path / "KR.json"))
    jq = subprocess.run(["jq", "-r", '.[] | select(.osType.code == "UBUNTU") | .serverImageNo',
                         str(m.path / "KR.json")], capture_output=True, text=True, timeout=30)
    assert jq.returncode == 0, jq.stderr
    by_tree = sorted(n for n in os.listdir(m.path / "KR")
                     if read(m.path / "KR" / n / "osType") == "UBUNTU\n")
    assert sorted(jq.stdout.split()) == by_tree and by_tree
    assert emulator.counts()["calls"] == before


def test_region_json_read_in_small_pieces(emulator, mount):
    """Reads at every offset in small pieces give the same bytes as one read."""
    m = mount()
    whole = read_bytes(m.path / "KR.json")
    pieces = []
    with open(m.path / "KR.json", "rb", buffering=0) as f:
        while True:
            chunk = f.read(97)
            if not chunk:
                break
            pieces.append(chunk)
    assert b"".join(pieces) == whole
    with open(m.path / "KR.json", "rb", buffering=0) as f:
        f.seek(len(whole) - 5)
        assert f.read(100) == whole[-5:]
        assert f.read(100) == b""


def test_empty_region_is_an_empty_array(emulator, mount):
    """A region with no image: "[]"."""
    for no in emulator.images("SGN"):
        emulator.delete_image("SGN", no)
    m = mount()
    assert read_bytes(m.path / "SGN.json") == b"[]\n"
    assert os.stat(m.path / "SGN.json").st_size == 3


def test_region_json_follows_changes(emulator, mount):
    """When the listing is fetched again after ttl, a changed image shows, size included."""
    m = mount("ttl=1")
    first = json.loads(read(m.path / "KR.json"))
    emulator.set_field("KR", 3135, ["serverImageName"], "renamed-" + "x" * 40)
    time.sleep(1.5)  # past the ttl (the test waits for it; it asserts nothing about time)
    os.listdir(m.path / "KR")
    data = read_bytes(m.path / "KR.json")
    assert os.stat(m.path / "KR.json").st_size == len(data)
    now = json.loads(data)
    assert len(now) == len(first)
    assert [i for i in now if i["serverImageNo"] == "3135"][0]["serverImageName"] == \
        "renamed-" + "x" * 40


def recipes():
    """The README's recipes: [(shell on the tree, jq on KR.json)] with /mnt/ncp as MNT."""
    text = (emu.REPO / "README.md").read_text()
    block = text.split("### Recipes", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    pairs = []
    for part in block.split("\n\n"):
        lines = [line for line in part.strip().splitlines() if not line.startswith("#")]
        jq_at = next(i for i, line in enumerate(lines) if line.startswith("jq "))
        pairs.append(("\n".join(lines[:jq_at]), "\n".join(lines[jq_at:])))
    return pairs


@pytest.mark.emulator(images=300)
def test_readme_recipes_agree_on_the_tree_and_with_jq(emulator, mount):
    """Each recipe of the README gives the same images both ways, and some at all."""
    backup = dict(emulator.image("KR", 3135), serverImageNo="3136",
                  serverImageName="web-backup-2025-06-20")
    emulator.put_image("KR", backup)
    m = mount()
    pairs = recipes()
    assert len(pairs) == 3
    for tree, jq in pairs:
        out = []
        for cmd in (tree, jq):
            done = subprocess.run(["bash", "-c", cmd.replace("/mnt/ncp", str(m.path))],
                                  capture_output=True, text=True, timeout=120)
            out.append(sorted(done.stdout.split()))
        assert out[0] == out[1], (tree, out)
        assert out[0], "the recipe found nothing: %s" % tree
