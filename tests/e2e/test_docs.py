# SPDX-License-Identifier: MIT
"""The man page: it renders without a warning, and it documents exactly the options and the
environment variables that `ncloudfs --help` lists, so neither can drift from the other.

The man page is read from its source (no groff needed but for the rendering test): a
small unescaper turns man(7) text and macro lines into plain text."""

import re
import shutil
import subprocess

import pytest

import emu

MAN_PAGE = emu.REPO / "ncloudfs.1"
SECTIONS = ("NAME", "SYNOPSIS", "DESCRIPTION", "THE TREE", "OPTIONS", "ENVIRONMENT", "FILES",
            "CACHING", "FSTAB AND SYSTEMD", "SIGNALS", "EXIT STATUS", "ERRORS", "SECURITY",
            "EXAMPLES", "SEE ALSO")
# Shown by --help in libfuse's part, not in ncloudfs's own: the man page documents them
# with the rest.
GENERIC_FUSE = {"-f", "-d", "-s", "allow_other"}

# man(7) escapes, as plain text.
NAMED_CHARS = {"aq": "'", "dq": '"', "ga": "`", "ti": "~", "ha": "^", "em": "--", "en": "-",
               "mu": "x", "bu": "*", "rs": "\\", "lq": '"', "rq": '"', "oq": "'", "cq": "'"}
ESCAPE = re.compile(r"\\(?:f(?:\[[^]]*\]|\(..|.)|\((..)|\[([^]]*)\]|(.))")
FONT_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}
FONT_SINGLE = {"B", "I", "SM", "SB"}
OPT_O = re.compile(r"-o\s*([a-z][a-z0-9_]*)")
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")
ENV_NAME = re.compile(r"\b[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+\b")


def unescape(text):
    """Plain text of man(7) inline text: fonts dropped, \\- as -, named characters."""
    def one(m):
        if m.group(0).startswith("\\f"):
            return ""
        name = m.group(1) or m.group(2)
        if name is not None:
            return NAMED_CHARS.get(name, "?")
        c = m.group(3)
        return {"-": "-", "e": "\\", " ": " ", "~": " ", "\\": "\\"}.get(c, "")  # \& \% \c ...
    return ESCAPE.sub(one, text)


def macro_args(rest):
    """Split a macro line's arguments as troff does: blanks separate, "quotes" group."""
    return [a[1:-1].replace('""', '"') if a.startswith('"') else a
            for a in re.findall(r'"(?:[^"]|"")*"?|\S+', rest)]


def plain_line(line):
    """The plain text a source line contributes (a request without text gives '')."""
    if not line.startswith((".", "'")):
        return unescape(line)
    m = re.match(r"[.'](\w+)\s*(.*)$", line)
    if not m:
        return ""
    name, args = m.group(1), macro_args(m.group(2))
    if name in FONT_ALTERNATING:
        return unescape("".join(args))
    if name in FONT_SINGLE:
        return unescape(" ".join(args))
    if name == "IP" and args:
        return unescape(args[0])
    return ""


def man_sections():
    """{section name: [source lines]} of the man page, comments left out."""
    sections, current = {}, None
    for line in MAN_PAGE.read_text().splitlines():
        if line.startswith(('.\\"', "'\\\"")):
            continue
        m = re.match(r"\.SH\s+(.*)$", line)
        if m:
            current = " ".join(macro_args(m.group(1)))
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return sections


def section_text(name):
    """A section of the man page as plain text."""
    sections = man_sections()
    assert name in sections, "the man page has no %s section" % name
    return "\n".join(plain_line(line) for line in sections[name])


def tag_options(lines):
    """The options named by the tags (.TP's next line, .IP's argument) of a section:
    ({-o names}, {flags})."""
    names, flags = set(), set()
    for i, line in enumerate(lines):
        tag = None
        if re.match(r"\.(TP|TQ)\b", line) and i + 1 < len(lines):
            tag = plain_line(lines[i + 1])
        elif re.match(r"\.IP\s+\S", line):
            tag = plain_line(line)
        if tag:
            names |= set(OPT_O.findall(tag))
            flags |= set(FLAG.findall(OPT_O.sub("", tag)))
    return names, flags


def help_text():
    """./ncloudfs --help, split at its "FUSE options:" line: (ncloudfs's part, libfuse's)."""
    if not emu.DAEMON.exists():
        pytest.fail("%s is missing: run `make` at the repo root" % emu.DAEMON, pytrace=False)
    done = subprocess.run([str(emu.DAEMON), "--help"], capture_output=True, text=True,
                          timeout=20, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done
    own, sep, fuse = done.stdout.partition("\nFUSE options:")
    assert sep, "--help has no 'FUSE options:' line:\n" + done.stdout
    return own, fuse


def help_options(text):
    """The options that a --help part lists, one per line that starts with '-':
    ({-o names}, {flags})."""
    names, flags = set(), set()
    for line in text.splitlines():
        m = re.match(r"\s+(-.*)$", line)
        if not m:
            continue
        # The option column: options separated by commas or blanks, up to the first word
        # that is not one (`-o negative_ttl=SECONDS remember ...` has a single blank).
        one = r"(?:-o\s+\S+|--?[\w-]+)"
        column = re.match(one + r"(?:(?:,\s*|\s+)" + one + ")*", m.group(1)).group(0)
        names |= set(OPT_O.findall(column))
        flags |= set(FLAG.findall(OPT_O.sub("", column)))
    return names, flags


def help_variables(own):
    """The environment variables --help names: in its Environment block and as $NAME."""
    names = set(re.findall(r"\$([A-Z][A-Z0-9_]+)", own))
    block = re.search(r"^Environment:\n((?:[ \t]+\S.*\n?)+)", own, re.MULTILINE)
    assert block, "--help has no Environment: block:\n" + own
    names |= set(ENV_NAME.findall(block.group(1)))
    return names


def test_man_page_renders_without_warnings():
    """groff -man -ww -Tutf8 renders the man page with nothing on stderr."""
    if not shutil.which("groff"):
        pytest.skip("groff is not installed (Debian: groff-base)")
    done = subprocess.run(["groff", "-man", "-ww", "-Tutf8", str(MAN_PAGE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr
    assert "NCLOUDFS(1)" in done.stdout


def test_man_page_has_every_section():
    """The man page has each section the project promises, in that order."""
    names = list(man_sections())
    missing = [s for s in SECTIONS if s not in names]
    assert not missing, "missing sections: %s" % missing
    assert [n for n in names if n in SECTIONS] == list(SECTIONS), names


def test_man_page_options_match_help():
    """Every option of --help's ncloudfs part is in the man page's OPTIONS, and every
    option there is in --help (the generic FUSE ones, in its libfuse part)."""
    own, fuse = help_text()
    help_names, help_flags = help_options(own)
    fuse_names, fuse_flags = help_options(fuse)
    man_names, man_flags = tag_options(man_sections().get("OPTIONS", []))
    # The parsers found something on each side: an empty set would pass vacuously.
    assert {"ttl", "api_url", "max_threads"} <= help_names, help_names
    assert {"-h", "--help"} <= help_flags, help_flags
    assert "ttl" in man_names, man_names

    assert not help_names - man_names, \
        "in --help, not in the man page's OPTIONS: %s" % sorted(help_names - man_names)
    assert not help_flags - man_flags, \
        "in --help, not in the man page's OPTIONS: %s" % sorted(help_flags - man_flags)
    extra = (man_names | man_flags) - help_names - help_flags - GENERIC_FUSE
    assert not extra, "in the man page's OPTIONS, not in --help: %s" % sorted(extra)
    generic = (man_names | man_flags) & GENERIC_FUSE
    assert not generic - fuse_names - fuse_flags, \
        "not in --help's FUSE part: %s" % sorted(generic - fuse_names - fuse_flags)


def test_man_page_environment_matches_help():
    """Every environment variable that --help names is in the man page's ENVIRONMENT."""
    own, _ = help_text()
    variables = help_variables(own)
    assert {"NCLOUD_ACCESS_KEY_ID", "NCLOUD_SECRET_ACCESS_KEY"} <= variables, variables
    documented = set(ENV_NAME.findall(section_text("ENVIRONMENT")))
    missing = variables - documented
    assert not missing, "in --help, not in the man page's ENVIRONMENT: %s" % sorted(missing)


def test_one_list_of_build_dependencies():
    """CI and packaging/build-deps.sh install the packages of packaging/build-deps.txt,
    and no package is named anywhere else."""
    listed = [line.split("#")[0].strip()
              for line in (emu.REPO / "packaging" / "build-deps.txt").read_text().splitlines()]
    listed = [p for p in listed if p]
    assert "python3-pytest" in listed and "libfuse3-dev" in listed
    ci = (emu.REPO / ".ci" / "run").read_text()
    script = (emu.REPO / "packaging" / "build-deps.sh").read_text()
    assert "packaging/build-deps.txt" in ci and "build-deps.txt" in script
    for text in (ci, script):
        named = [p for p in listed if re.search(r"(?<![\w.-])%s(?![\w.-])" % re.escape(p),
                                                text)]
        assert named == [], "packages named outside build-deps.txt: %s" % named


def source_files():
    """The project's source files: C, Python, shell, make, spec, units, the man page."""
    if (emu.REPO / ".git").exists():
        names = subprocess.run(["git", "ls-files"], cwd=emu.REPO, capture_output=True,
                               text=True, check=True).stdout.split()
    else:
        names = (emu.REPO / "MANIFEST").read_text().split()
    picked = []
    for name in names:
        if name.startswith(("tests/unit/data/", "tests/unit/golden/", "tests/fuzz/corpus/")):
            continue
        if (name.endswith((".c", ".h", ".py", ".sh", ".spec", ".service", ".mount"))
                or name in (".ci/run", "Makefile", "packaging/debian/rules", "ncloudfs.1")):
            picked.append(name)
    return picked


def test_every_source_file_says_its_license():
    """MIT, in LICENSE, and an SPDX line near the top of every source file."""
    assert (emu.REPO / "LICENSE").read_text().startswith("MIT License")
    files = source_files()
    assert len(files) > 50 and "fs/main.c" in files and "Makefile" in files
    missing = [name for name in files
               if "SPDX-License-Identifier: MIT" not in
               "\n".join((emu.REPO / name).read_text().splitlines()[:3])]
    assert missing == []
    assert "License: Expat" in (emu.REPO / "packaging/debian/copyright").read_text()
    assert re.search(r"^License:\s+MIT$", (emu.REPO / "packaging/rpm/ncloudfs.spec").read_text(),
                     re.M)
