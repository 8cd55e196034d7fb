# SPDX-License-Identifier: MIT
"""Every way of writing answers EROFS, everywhere in the tree; reads keep working."""

import errno
import os
import subprocess

import pytest

XATTR = "user.ncp.codeName"

# Where writes are tried: (directory, an existing subdirectory, an existing file), relative
# to the mountpoint; None when that directory holds no such entry.
PLACES = {
    "root": ("", "KR", None),
    "region": ("KR", "3135", "3135.json"),
    "image": ("KR/3135", "blockStorageMappingList", "osType"),
    "subdirectory": ("KR/3135/blockStorageMappingList/0", None, "iops"),
}


def erofs(func, *args, **kwargs):
    """Assert that func(*args, **kwargs) fails with EROFS."""
    with pytest.raises(OSError) as info:
        func(*args, **kwargs)
    got = info.value.errno
    assert got == errno.EROFS, "%s%r: %s, expected EROFS" % (
        func.__name__, args, errno.errorcode.get(got, got))


def assert_reads_work(m):
    """Assert the tree still reads as before."""
    assert sorted(os.listdir(m.path)) == ["JPN", "KR", "SGN"]
    assert (m.path / "KR" / "3135" / "osType").read_text() == "UBUNTU\n"
    assert os.getxattr(m.path / "KR" / "3135" / "osType", XATTR) == b"UBUNTU"
    assert (m.path / "KR" / "3135" / "blockStorageMappingList" / "0" / "iops").read_text() \
        == "100\n"
    assert "3135" in os.listdir(m.path / "KR")


def places(m, where):
    """Return (directory, subdirectory or None, file or None) as paths for PLACES[where]."""
    d, sub, f = PLACES[where]
    base = m.path / d if d else m.path
    return base, (base / sub if sub else None), (base / f if f else None)


def warm(m):
    """Read everything the tests write to, so refusals come from a populated cache too."""
    for d, sub, f in PLACES.values():
        base = m.path / d if d else m.path
        os.listdir(base)
        if f:
            (base / f).read_bytes()


@pytest.mark.parametrize("where", PLACES)
def test_creating_anything_answers_erofs(emulator, mount, where):
    """create, mkdir, mknod, symlink and link of new names answer EROFS."""
    m = mount()
    warm(m)
    base, sub, f = places(m, where)
    # New names: in a region only a canonical image number could exist, so try one too.
    for name in ("newfile", "4242") if where == "region" else ("newfile",):
        erofs(os.open, base / name, os.O_CREAT | os.O_WRONLY, 0o644)
        erofs(os.open, base / name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
        erofs(os.mkdir, base / name)
        erofs(os.mkfifo, base / name)
        erofs(os.symlink, "/etc/hostname", base / name)
        erofs(os.link, f or sub, base / name)
    assert_reads_work(m)


@pytest.mark.parametrize("where", PLACES)
def test_removing_and_renaming_answer_erofs(emulator, mount, where):
    """rmdir, unlink and rename of existing entries answer EROFS."""
    m = mount()
    warm(m)
    base, sub, f = places(m, where)
    if sub:
        erofs(os.rmdir, sub)
        erofs(os.unlink, sub)
        erofs(os.rename, sub, base / "renamed")
    if f:
        erofs(os.unlink, f)
        erofs(os.rename, f, base / "renamed")
        erofs(os.replace, f, f)
    if where != "root":
        erofs(os.rmdir, base)
        erofs(os.rename, base, base.parent / "renamed")
    erofs(os.unlink, base / "nosuchname")
    assert_reads_work(m)


@pytest.mark.parametrize("where", PLACES)
def test_changing_attributes_answers_erofs(emulator, mount, where):
    """chmod, chown, utime, setxattr and removexattr answer EROFS on dirs and files."""
    m = mount()
    warm(m)
    base, sub, f = places(m, where)
    for path in filter(None, (base, sub, f)):
        erofs(os.chmod, path, 0o777)
        erofs(os.chown, path, os.getuid(), os.getgid())
        erofs(os.utime, path)
        erofs(os.utime, path, (0, 0))
        erofs(os.setxattr, path, "user.test", b"x")
        erofs(os.setxattr, path, XATTR, b"x")
        erofs(os.removexattr, path, "user.test")
    if where == "image":
        erofs(os.setxattr, f, XATTR, b"changed", os.XATTR_REPLACE)
        erofs(os.removexattr, f, XATTR)
        assert os.getxattr(f, XATTR) == b"UBUNTU"
    assert_reads_work(m)


@pytest.mark.parametrize("where", [w for w, (_, _, f) in PLACES.items() if f])
def test_writing_an_existing_file_answers_erofs(emulator, mount, where):
    """Opening a file for writing, truncating it and O_TRUNC answer EROFS."""
    m = mount()
    warm(m)
    _, _, f = places(m, where)
    before = f.read_bytes()
    for flags in (os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_APPEND, os.O_RDONLY | os.O_TRUNC,
                  os.O_WRONLY | os.O_TRUNC, os.O_WRONLY | os.O_CREAT):
        erofs(os.open, f, flags)
    erofs(os.truncate, f, 0)
    erofs(os.truncate, f, 1000)
    assert f.read_bytes() == before
    assert os.stat(f).st_size == len(before)
    assert_reads_work(m)


def test_shell_writes_fail_with_read_only_file_system(emulator, mount):
    """touch, echo >, rm, mkdir, mv, cp into the mount all fail saying read-only."""
    m = mount()
    image = m.path / "KR" / "3135"
    for cmd in ("touch %s/new" % image, "touch %s/osType" % image,
                "echo x > %s/osType" % image, "echo x >> %s/osType" % image,
                "rm -f %s/osType" % image, "rm -rf %s" % image,
                "mkdir %s/d" % image, "mv %s/osType %s/o" % (image, image),
                "cp /etc/hostname %s/" % image, "ln -s x %s/l" % image):
        proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=30)
        assert proc.returncode != 0, cmd
        assert "Read-only file system" in proc.stderr, (cmd, proc.stderr)
    assert_reads_work(m)


def test_mount_is_read_only_even_when_rw_is_asked(emulator, mount):
    """`-o rw` does not make the mount writable: it is ro in mountinfo and writes are EROFS."""
    m = mount("rw")
    with open("/proc/self/mountinfo") as info:
        line = next(line for line in info if line.split()[4] == str(m.path))
    assert "ro" in line.split()[5].split(",")
    image = m.path / "KR" / "3135"
    erofs(os.open, image / "osType", os.O_WRONLY)
    erofs(os.open, image / "new", os.O_CREAT | os.O_WRONLY, 0o644)
    erofs(os.truncate, image / "osType", 0)
    erofs(os.mkdir, image / "d")
    erofs(os.setxattr, image / "osType", XATTR, b"x")
    assert_reads_work(m)


@pytest.mark.parametrize("ttl", ["0", "60"])
def test_writes_are_refused_with_caching_on_and_off(emulator, mount, ttl):
    """EROFS holds both with real opens (ttl=0) and zero-round-trip opens (ttl>0)."""
    m = mount("ttl=" + ttl)
    f = m.path / "KR" / "3135" / "osType"
    assert f.read_text() == "UBUNTU\n"
    erofs(os.open, f, os.O_WRONLY)
    erofs(os.open, f, os.O_RDWR)
    erofs(os.truncate, f, 0)
    fd = os.open(f, os.O_RDONLY)
    try:
        with pytest.raises(OSError) as info:
            os.write(fd, b"x")
        assert info.value.errno == errno.EBADF
    finally:
        os.close(fd)
    assert f.read_text() == "UBUNTU\n"
