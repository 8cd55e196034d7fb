# SPDX-License-Identifier: MIT
"""Smoke test of the mount fixture and the daemon: the tree's top and one field."""


def test_mount_shows_regions_and_a_field(mount):
    m = mount()
    assert sorted(p.name for p in m.path.iterdir()) == ["JPN", "KR", "SGN"]
    assert (m.path / "KR" / "3135" / "osType").read_text() == "UBUNTU\n"
    assert m.unmount() == 0
