# SPDX-License-Identifier: MIT
"""Everyday tools on a real mount (find, grep, stat, tar, cp, cat loops, ls -l, wc),
their output compared with what the emulator serves."""

import filecmp
import json
import os
import shutil
import subprocess
from datetime import datetime

import pytest
from expect import is_code, file_bytes

XATTR = "user.ncp.codeName"


# ---- expectations from the emulator's JSON (same rules as test_tree.py) ---------------

def expected_files(value, rel=""):
    """Map each file's relative path to its bytes; directories map to None."""
    if isinstance(value, (dict, list)) and not is_code(value):
        items = (list(value.items()) if isinstance(value, dict)
                 else [(str(i), v) for i, v in enumerate(value)])
        out = {rel: None}
        for key, child in items:
            out.update(expected_files(child, rel + "/" + key if rel else key))
        return out
    return {rel: file_bytes(value)}


def create_epoch(image):
    """Return the image's createDate as epoch seconds."""
    return int(datetime.strptime(image["createDate"], "%Y-%m-%dT%H:%M:%S%z").timestamp())


def run(cmd, **kw):
    """Run a command (list, or a shell string) and return its stdout; it must succeed quietly."""
    shell = isinstance(cmd, str)
    proc = subprocess.run(cmd, shell=shell, capture_output=True, timeout=30, **kw)
    assert proc.returncode == 0, "%s: exit %d: %s" % (cmd, proc.returncode, proc.stderr)
    assert proc.stderr == b"", "%s: %s" % (cmd, proc.stderr)
    return proc.stdout


def read_tree(root):
    """Map every relative path under root to file bytes (None for a directory)."""
    out = {"": None}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        rel = "" if rel == "." else rel + "/"
        for d in dirnames:
            out[rel + d] = None
        for f in filenames:
            with open(os.path.join(dirpath, f), "rb") as fh:
                out[rel + f] = fh.read()
    return out


# ---- find -----------------------------------------------------------------------------

def test_find_lists_exactly_the_expected_paths(emulator, mount):
    """`find MNT/KR/3135` prints every path derived from the JSON, and nothing else."""
    image = emulator.image("KR", "3135")
    files = expected_files(image)
    m = mount()
    root = str(m.path / "KR" / "3135")
    expected = sorted(root + ("/" + rel if rel else "") for rel in files)
    lines = run(["find", root]).decode().splitlines()
    assert sorted(lines) == expected
    n_files = sum(1 for v in files.values() if v is not None)
    assert run("find %s -type f | wc -l" % root).decode().strip() == str(n_files)
    n_dirs = sum(1 for v in files.values() if v is None)
    assert run("find %s -type d | wc -l" % root).decode().strip() == str(n_dirs)
    empty = run(["find", root, "-type", "f", "-empty"]).decode().split()
    assert empty == []  # 3135 has no null field


def test_find_over_a_whole_region(emulator, mount):
    """`find MNT/SGN -type f` finds every file of every SGN image."""
    m = mount()
    expected = set()
    for no in emulator.images("SGN"):
        for rel, data in expected_files(emulator.image("SGN", no)).items():
            if data is not None:
                expected.add("%s/SGN/%s/%s" % (m.path, no, rel))
    lines = run(["find", str(m.path / "SGN"), "-type", "f"]).decode().splitlines()
    assert len(lines) == len(expected)
    assert set(lines) == expected


# ---- grep -----------------------------------------------------------------------------

def test_grep_recursive_finds_every_file_holding_the_string(emulator, mount):
    """`grep -r` over KR/3135 matches exactly the files whose content holds the string."""
    image = emulator.image("KR", "3135")
    files = {rel: data for rel, data in expected_files(image).items() if data is not None}
    m = mount()
    root = str(m.path / "KR" / "3135")
    for word in ("UBUNTU", "100", "NULL", "created", "false"):
        hits = {rel for rel, data in files.items() if word.encode() in data}
        assert hits, word
        out = run(["grep", "-rl", word, root]).decode().splitlines()
        assert sorted(out) == sorted(root + "/" + rel for rel in hits), word
    out = run(["grep", "-r", "UBUNTU", root]).decode().splitlines()
    assert out == [root + "/osType:UBUNTU"]


def test_grep_l_across_images_lists_exactly_the_ubuntu_ones(emulator, mount):
    """`grep -l UBUNTU MNT/KR/*/osType` lists exactly the images whose osType is UBUNTU."""
    m = mount()
    kr = m.path / "KR"
    expected = sorted("%s/%s/osType" % (kr, no) for no in emulator.images("KR")
                      if emulator.image("KR", no)["osType"]["code"] == "UBUNTU")
    assert len(expected) >= 2
    proc = subprocess.run("grep -l UBUNTU %s/*/osType" % kr, shell=True, capture_output=True,
                          timeout=30)
    assert proc.returncode == 0 and proc.stderr == b""
    assert sorted(proc.stdout.decode().splitlines()) == expected


# ---- stat, wc -------------------------------------------------------------------------

def test_stat_reports_size_mode_and_mtime(emulator, mount):
    """`stat -c '%s %a %Y %u %g %F'` agrees with the JSON for files and directories."""
    m = mount()
    uid, gid = os.getuid(), os.getgid()
    for region, no in (("KR", "3135"), ("KR", "100005"), ("JPN", "300004")):
        image = emulator.image(region, no)
        epoch = create_epoch(image)
        files = expected_files(image)
        root = m.path / region / no
        picks = ["", "osType", "serverImageName", "createDate", "blockStorageMappingList",
                 "blockStorageMappingList/0/iops", "blockStorageMappingList/0/isEncryptedVolume",
                 "serverImageDescription"]
        picks = [p for p in picks if p in files]
        paths = [str(root / p) if p else str(root) for p in picks]
        out = run(["stat", "-c", "%s %a %Y %u %g %F"] + paths).decode().splitlines()
        for pick, line in zip(picks, out):
            data = files[pick]
            if data is None:
                assert line.split()[1:] == ["555", str(epoch), str(uid), str(gid), "directory"]
            else:
                kind = "regular empty file" if data == b"" else "regular file"
                assert line == "%d 444 %d %d %d %s" % (len(data), epoch, uid, gid, kind), pick
        assert len(out) == len(picks)


def test_wc_c_counts_exact_bytes(emulator, mount):
    """`wc -c` over every top-level file of KR/3135 agrees with the JSON."""
    image = emulator.image("KR", "3135")
    files = expected_files(image)
    m = mount()
    root = m.path / "KR" / "3135"
    names = sorted(k for k, v in files.items() if v is not None and "/" not in k)
    out = run(["wc", "-c"] + [str(root / n) for n in names]).decode().splitlines()
    got = {line.split()[1]: int(line.split()[0]) for line in out[:-1]}
    assert got == {str(root / n): len(files[n]) for n in names}
    assert int(out[-1].split()[0]) == sum(len(files[n]) for n in names)


# ---- tar, cp --------------------------------------------------------------------------

def test_tar_archives_every_file_with_exact_sizes(emulator, mount, tmp_path):
    """tar of KR/3135 lists every path with its size; extracted bytes equal the mount's."""
    image = emulator.image("KR", "100005")  # has a null field: an empty file
    files = expected_files(image)
    m = mount()
    archive = tmp_path / "img.tar"
    run(["tar", "-cf", str(archive), "-C", str(m.path / "KR"), "100005"])
    listing = run(["tar", "-tvf", str(archive)]).decode().splitlines()
    got = {}
    for line in listing:
        fields = line.split(None, 5)
        got[fields[5].rstrip("/")] = (fields[0][0], int(fields[2]))
    expected = {("100005/" + rel if rel else "100005"):
                ("d", 0) if data is None else ("-", len(data)) for rel, data in files.items()}
    assert got == expected
    out = tmp_path / "x"
    out.mkdir()
    run(["tar", "-xf", str(archive), "-C", str(out)])
    assert read_tree(out / "100005") == read_tree(m.path / "KR" / "100005")
    assert read_tree(out / "100005") == files
    assert os.stat(out / "100005" / "osType").st_mtime == create_epoch(image)


def test_tar_pipe_of_the_guide_image(emulator, mount, tmp_path):
    """`tar -cf - -C MNT/KR 3135 | tar -tvf -` lists exact sizes; `| tar -xf -` the bytes."""
    files = expected_files(emulator.image("KR", "3135"))
    m = mount()
    kr = m.path / "KR"
    listing = run("set -o pipefail; tar -cf - -C %s 3135 | tar -tvf -" % kr,
                  executable="/bin/bash").decode().splitlines()
    sizes = {f[5].rstrip("/"): int(f[2]) for f in (line.split(None, 5) for line in listing)}
    assert sizes == {("3135/" + rel if rel else "3135"): len(data or b"")
                     for rel, data in files.items()}
    run("set -o pipefail; tar -cf - -C %s 3135 | tar -xf - -C %s" % (kr, tmp_path),
        executable="/bin/bash")
    assert read_tree(tmp_path / "3135") == files


def test_cp_r_copies_the_tree_exactly(emulator, mount, tmp_path):
    """`cp -r MNT/KR/3135 tmp/` gives a tree equal to the mount's, byte for byte."""
    files = expected_files(emulator.image("KR", "3135"))
    m = mount()
    src = m.path / "KR" / "3135"
    run(["cp", "-r", str(src), str(tmp_path)])
    copy = tmp_path / "3135"
    assert read_tree(copy) == read_tree(src) == files

    def same(cmp):
        """Assert dircmp found no difference, recursively."""
        assert not cmp.left_only and not cmp.right_only and not cmp.funny_files
        _, mismatch, errors = filecmp.cmpfiles(cmp.left, cmp.right, cmp.common_files,
                                               shallow=False)
        assert not mismatch and not errors
        for sub in cmp.subdirs.values():
            same(sub)
    same(filecmp.dircmp(src, copy))


def test_cp_a_keeps_times_and_the_codename_xattr(emulator, mount, tmp_path):
    """`cp -a` preserves the mtime (createDate) and copies user.ncp.codeName."""
    image = emulator.image("KR", "3135")
    m = mount()
    run(["cp", "-a", str(m.path / "KR" / "3135"), str(tmp_path)])
    copy = tmp_path / "3135"
    assert os.stat(copy / "osType").st_mtime == create_epoch(image)
    try:
        value = os.getxattr(copy / "osType", XATTR)
    except OSError as e:
        pytest.skip("tmp does not keep user xattrs: %s" % e)
    assert value == image["osType"]["codeName"].encode()
    assert os.listxattr(copy / "serverImageName") == []


# ---- shell loops, ls -l ---------------------------------------------------------------

def test_cat_loop_over_every_ostype(emulator, mount):
    """`for f in MNT/KR/*/osType; do cat "$f"; done` prints each image's osType code."""
    m = mount()
    kr = m.path / "KR"
    out = run('for f in %s/*/osType; do printf "%%s " "$f"; cat "$f"; done' % kr).decode()
    got = dict(line.split(" ", 1) for line in out.splitlines())
    expected = {"%s/%s/osType" % (kr, no): emulator.image("KR", no)["osType"]["code"]
                for no in emulator.images("KR")}
    assert got == expected


def test_ls_l_of_a_region(emulator, mount):
    """`ls -ln MNT/KR` (readdirplus) shows one read-only directory per image."""
    images = emulator.images("KR")
    m = mount()
    lines = run(["ls", "-ln", str(m.path / "KR")]).decode().splitlines()
    assert lines[0].startswith("total ")
    entries = lines[1:]
    assert len(entries) == len(images)
    assert sorted(line.split()[-1] for line in entries) == sorted(images)
    for line in entries:
        fields = line.split()
        assert fields[0].startswith("dr-xr-xr-x"), line
        assert (fields[2], fields[3]) == (str(os.getuid()), str(os.getgid())), line


def test_ls_l_of_an_image_shows_sizes(emulator, mount):
    """`ls -ln MNT/KR/3135` shows each top-level entry: files 0444 with exact sizes, dirs 0555."""
    files = expected_files(emulator.image("KR", "3135"))
    m = mount()
    lines = run(["ls", "-ln", str(m.path / "KR" / "3135")]).decode().splitlines()[1:]
    got = {f[-1]: (f[0], int(f[4])) for f in (line.split() for line in lines)}
    top = {k: v for k, v in files.items() if k and "/" not in k}
    assert set(got) == set(top)
    for name, data in top.items():
        mode, size = got[name]
        if data is None:
            assert mode == "dr-xr-xr-x", name
        else:
            assert (mode, size) == ("-r--r--r--", len(data)), name


def expected_codenames(value, rel=""):
    """Map the relative path of every common-code file to its codeName."""
    if is_code(value):
        return {rel: value["codeName"]} if value["codeName"] is not None else {}
    out = {}
    if isinstance(value, (dict, list)):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in items:
            out.update(expected_codenames(child, "%s/%s" % (rel, key) if rel else str(key)))
    return out


@pytest.mark.skipif(not shutil.which("getfattr"), reason="getfattr is not installed")
def test_getfattr_dumps_every_codename(emulator, mount):
    """`getfattr -R -d` over an image shows user.ncp.codeName on exactly the common codes."""
    image = emulator.image("KR", "3135")
    m = mount()
    out = run(["getfattr", "-R", "-d", "-m", "-", "3135"], cwd=m.path / "KR").decode()
    got, current = {}, None
    for line in out.splitlines():
        if line.startswith("# file: "):
            current = line[len("# file: "):]
        elif line.startswith(XATTR + "="):
            got[current] = json.loads(line[len(XATTR) + 1:])
    expected = {"3135/" + rel: name for rel, name in expected_codenames(image).items()}
    assert len(expected) >= 10
    assert got == expected
    value = run(["getfattr", "-n", XATTR, "--only-values", "3135/osType"], cwd=m.path / "KR")
    assert value == b"UBUNTU"
