# SPDX-License-Identifier: MIT
"""What the mount should show, derived from the emulator's JSON by the README's rules
("The tree"), and small helpers shared by the end-to-end tests, the soak and the bench."""

import json
import time


def is_code(value):
    """Tell whether value is an NCP common code {code, codeName}."""
    return (isinstance(value, dict) and set(value) == {"code", "codeName"}
            and isinstance(value["code"], str)
            and (value["codeName"] is None or isinstance(value["codeName"], str)))


def file_bytes(value):
    """Return what the file for a JSON scalar (or common code) holds."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"true\n" if value else b"false\n"
    if isinstance(value, str):
        return (value + "\n").encode()
    if is_code(value):
        return (value["code"] + "\n").encode()
    return (json.dumps(value) + "\n").encode()  # a number, as the API printed it


def expected_nodes(value, rel=""):
    """Map every relative path of an image to ("dir", sorted names) or ("file", bytes, codeName)."""
    if isinstance(value, (dict, list)) and not is_code(value):
        items = (list(value.items()) if isinstance(value, dict)
                 else [(str(i), v) for i, v in enumerate(value)])
        nodes = {rel: ("dir", sorted(k for k, _ in items), None)}
        for key, child in items:
            nodes.update(expected_nodes(child, rel + "/" + key if rel else key))
        return nodes
    return {rel: ("file", file_bytes(value), value["codeName"] if is_code(value) else None)}


def read(path):
    """Read a file of the mount as text."""
    with open(path) as f:
        return f.read()


def errno_of(fn, *args):
    """Run fn(*args); return the errno of the OSError it raised, or None."""
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return None


def stats(mountpoint):
    """The mount's /.stats as a dict of integers."""
    out = {}
    for line in read(mountpoint / ".stats").splitlines():
        key, _, value = line.partition(": ")
        out[key] = int(float(value))
    return out


def wait_until(predicate, what, seconds=60):
    """Poll until predicate() holds; fail saying `what` was not seen if the deadline passes.
    The deadline only bounds a wait: nothing is concluded from how long it took."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError("waited %d s for %s" % (seconds, what))
        time.sleep(0.02)


def wait_fetches_started(mountpoint, misses, n=1, seconds=60):
    """Wait until /.stats cache_misses is misses + n: n fetches have gone to the API.
    (The daemon counts a miss as it starts the fetch; the emulator counts a call only once
    it has answered, so a hanging call shows there only after it is released.)"""
    wait_until(lambda: stats(mountpoint)["cache_misses"] >= misses + n,
               "%d fetch(es) to start (cache_misses %d -> %d)" % (n, misses, misses + n),
               seconds)
