# SPDX-License-Identifier: MIT
"""Helpers shared by the e2e tests and the demo.

Starts the NCP emulator as a subprocess with a fresh self-signed certificate,
drives its control API (/_emu/), makes signed API calls the way a client does,
and runs ./ncloudfs in the foreground on a mountpoint.
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PYTHON = "/usr/bin/python3"
REPO = Path(__file__).resolve().parents[2]
EMULATOR = REPO / "tests" / "emulator" / "ncp_emulator.py"
DAEMON = Path(os.environ.get("NCLOUDFS", REPO / "ncloudfs"))  # NCLOUDFS=path tests another build
ACCESS_KEY = "NCPTESTACCESSKEY0001"
SECRET_KEY = "ncp-test-secret-key-0123456789abcdef"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


class EmulatorError(Exception):
    """A control call failed or the emulator would not start."""


class MountError(Exception):
    """The daemon exited or timed out before its mount went live."""


def make_cert(directory):
    """Make a self-signed certificate for 127.0.0.1 in directory; return (cert, key) paths."""
    directory = Path(directory)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return str(cert), str(key)


def sign(secret_key, method, uri, timestamp, access_key):
    """Return the API Gateway signature v2 of METHOD URI at timestamp."""
    message = "%s %s\n%s\n%s" % (method, uri, timestamp, access_key)
    mac = hmac.new(secret_key.encode(), message.encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def now_ms():
    """Return the current time in epoch milliseconds."""
    return int(time.time() * 1000)


class Response:
    """An API answer: status, headers, raw body."""

    def __init__(self, status, headers, body):
        """Keep the parts of one answer."""
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        """Decode the body as JSON."""
        return json.loads(self.body)

    def __repr__(self):
        """Show the status and the start of the body."""
        return "<Response %d %r>" % (self.status, self.body[:200])


class Emulator:
    """One emulator subprocess and a client for its control API and its API."""

    def __init__(self, workdir, cert=None, key=None, http=False, images=20, seed=1,
                 latency=0.0, notfound="400", access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                 page_cap=0, overlap=0):
        """Describe an emulator; certificate made in workdir unless given or http."""
        self.workdir = Path(workdir)
        self.http = http
        self.cert, self.key = cert, key
        self.options = ["--images", str(images), "--seed", str(seed), "--latency", str(latency),
                        "--notfound", notfound, "--page-cap", str(page_cap),
                        "--overlap", str(overlap)]
        self.access_key, self.secret_key = access_key, secret_key
        self.proc = None
        self.port = None

    @property
    def url(self):
        """Base URL of the API, e.g. https://127.0.0.1:PORT."""
        return "%s://127.0.0.1:%d" % ("http" if self.http else "https", self.port)

    @property
    def cafile(self):
        """The certificate to trust (None over plain HTTP)."""
        return None if self.http else self.cert

    def start(self):
        """Start the process and wait until it listens."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.http and not self.cert:
            self.cert, self.key = make_cert(self.workdir)
        port_file = self.workdir / "emulator.port"
        port_file.unlink(missing_ok=True)
        cmd = [PYTHON, str(EMULATOR), "--port", "0", "--port-file", str(port_file),
               "--access-key", self.access_key, "--secret-key", self.secret_key, *self.options]
        cmd += ["--http"] if self.http else ["--cert", self.cert, "--key", self.key]
        self.stderr_path = self.workdir / "emulator.stderr"
        # Own sessions: a Ctrl-C reaches only pytest or the demo, which stop children in order.
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err, start_new_session=True)
        self.port = self.wait_port(port_file)
        return self

    def wait_port(self, port_file):
        """Return the port from port_file once it appears; fail if the process exits."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if port_file.exists():
                return int(port_file.read_text())
            if self.proc.poll() is not None:
                raise EmulatorError("emulator exited %d: %s"
                                    % (self.proc.returncode, self.stderr()))
            time.sleep(0.02)
        self.stop()
        raise EmulatorError("emulator did not start in %.0f s: %s" % (START_TIMEOUT, self.stderr()))

    def stderr(self):
        """Return what the emulator printed on stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def stop(self):
        """Stop the process (SIGTERM, then SIGKILL); return its stderr."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.stderr()

    def __enter__(self):
        """Start on entering a with block."""
        return self.start()

    def __exit__(self, *exc):
        """Stop on leaving a with block."""
        self.stop()

    # --- control API ------------------------------------------------------

    def ssl_context(self):
        """Return a client TLS context that trusts the emulator's certificate."""
        return ssl.create_default_context(cafile=self.cert)

    def control(self, method, path, body=None, query=None):
        """Call the control API; return the decoded answer or raise EmulatorError."""
        url = self.url + "/_emu/" + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        context = None if self.http else self.ssl_context()
        try:
            with urllib.request.urlopen(req, context=context, timeout=10) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as e:
            detail = e.read().decode()
            raise EmulatorError("%s %s: %d %s" % (method, path, e.code, detail)) from None

    def counts(self):
        """Return calls, calls_by_status, connections, api_connections, auth_failures."""
        return self.control("GET", "counts")

    def requests(self):
        """Return the recent API requests, oldest first: action, method, target, status, conn,
        received and answered (the emulator's time.time() when the request arrived and when
        its answer went out), latency (the delay it added), and retry_after (the Retry-After
        header) if one was sent."""
        return self.control("GET", "requests")

    def reset(self):
        """Zero the counters and the request log."""
        self.control("POST", "reset", {})

    def latency(self, seconds, action=None):
        """Delay API answers (of one action, or all)."""
        self.control("POST", "latency", {"seconds": seconds, "action": action})

    def fault(self, kind, action="*", count=1, retry_after=None, match="",
              retry_after_date=False):
        """Queue a fault for the next count matching calls (-1: until cleared).

        A 429 carries Retry-After: retry_after (default 1); a 503 only when retry_after is
        given. retry_after_date sends it as an HTTP-date retry_after seconds ahead."""
        body = {"kind": str(kind), "action": action, "count": count, "match": match}
        if retry_after is not None:
            body["retry_after"] = retry_after
        if retry_after_date:
            body["retry_after_date"] = True
        self.control("POST", "fault", body)

    def chaos(self, rate, kinds=None, hang_seconds=3, retry_after=1, seed=None):
        """Fail each API call with probability rate, a kind picked from kinds (0: off)."""
        body = {"rate": rate, "hang_seconds": hang_seconds, "retry_after": retry_after,
                "seed": seed}
        if kinds is not None:
            body["kinds"] = [str(k) for k in kinds]
        self.control("POST", "chaos", body)

    def clear_faults(self):
        """Drop all faults and release hanging requests."""
        self.control("POST", "fault/clear", {})

    def put_image(self, region, image):
        """Insert or replace an image (keyed by its serverImageNo)."""
        self.control("POST", "image", {"region": region, "image": image})

    def delete_image(self, region, no):
        """Remove an image."""
        self.control("POST", "image/delete", {"region": region, "no": str(no)})

    def set_field(self, region, no, path, value):
        """Set a nested field of an image; path is a list of keys and indices."""
        self.control("POST", "image/set", {"region": region, "no": str(no), "path": list(path),
                                           "value": value})

    def delete_field(self, region, no, path):
        """Remove a nested field of an image."""
        self.control("POST", "image/set", {"region": region, "no": str(no), "path": list(path),
                                           "delete": True})

    def image(self, region, no):
        """Return an image exactly as served."""
        return self.control("GET", "image", query={"region": region, "no": str(no)})

    def images(self, region):
        """Return the region's serverImageNo list, ascending."""
        return self.control("GET", "images", query={"region": region})

    def notfound(self, mode):
        """Answer a missing image with HTTP 400 ("400") or an empty list ("empty")."""
        self.control("POST", "notfound", {"mode": str(mode)})

    def paging(self, cap=0, overlap=0):
        """Cap getServerImageList pages at cap rows and/or make each page start overlap rows
        before the end of the one before (0 turns each off); see the emulator's doc."""
        self.control("POST", "paging", {"cap": cap, "overlap": overlap})

    def clock(self, skew_ms):
        """Shift the emulator's clock by skew_ms."""
        self.control("POST", "clock", {"skew_ms": skew_ms})

    # --- API calls, signed like a client ------------------------------------

    def connection(self):
        """Return a new keep-alive connection to the emulator."""
        if self.http:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                           context=self.ssl_context())

    def call(self, action, params=(), method="GET", fmt="json", conn=None, timestamp=None,
             access_key=None, secret_key=None, signature=None, headers=None):
        """Make a signed API call; any part of the signing can be overridden."""
        pairs = list(params.items()) if isinstance(params, dict) else list(params)
        if fmt:
            pairs.append(("responseFormatType", fmt))
        uri = "/vserver/v2/" + action
        if pairs:
            uri += "?" + urllib.parse.urlencode(pairs)
        timestamp = str(now_ms() if timestamp is None else timestamp)
        access_key = self.access_key if access_key is None else access_key
        if signature is None:
            secret = self.secret_key if secret_key is None else secret_key
            signature = sign(secret, method, uri, timestamp, access_key)
        sent = {"x-ncp-apigw-timestamp": timestamp, "x-ncp-iam-access-key": access_key,
                "x-ncp-apigw-signature-v2": signature}
        sent.update(headers or {})
        sent = {k: v for k, v in sent.items() if v is not None}
        return self.request(method, uri, sent, conn)

    def request(self, method, target, headers=None, conn=None, body=None):
        """Send one raw request; on a given conn it stays open for the next."""
        own = conn is None
        conn = self.connection() if own else conn
        try:
            conn.request(method, target, body=body, headers=headers or {})
            answer = conn.getresponse()
            return Response(answer.status, answer.headers, answer.read())
        finally:
            if own:
                conn.close()


def mountinfo_has(path):
    """Tell whether path is a FUSE mountpoint (without touching it: it may hang)."""
    path = os.path.join(os.path.realpath(os.path.dirname(os.path.abspath(path))),
                        os.path.basename(os.path.abspath(path)))
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields, _, rest = line.partition(" - ")
            mountpoint = OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), fields.split()[4])
            fstype = rest.split()[0]
            if mountpoint == path and fstype in ("fuse.ncloudfs", "fuse"):
                return True
    return False


def fusermount_unmount(path):
    """Unmount path with fusermount3 -u, falling back to a lazy -uz; return success."""
    for flags in ("-u", "-uz"):
        try:
            if subprocess.run(["fusermount3", flags, str(path)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=STOP_TIMEOUT).returncode == 0:
                return True
        except subprocess.TimeoutExpired:
            pass
    return not mountinfo_has(path)


def daemon_env(emulator, home, overrides=None):
    """Return the daemon's environment: no NCLOUD_* from outside, the emulator's keys, HOME."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NCLOUD_")}
    env.update(HOME=str(home), NCLOUD_ACCESS_KEY_ID=emulator.access_key,
               NCLOUD_SECRET_ACCESS_KEY=emulator.secret_key)
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def daemon_args(emulator, opts, api_opts=True):
    """Return ncloudfs's arguments: -f, then -o api_url,cafile (unless given) and opts."""
    flags = [o for o in opts if o.startswith("-")]
    options = [o for o in opts if not o.startswith("-")]
    names = {o.partition("=")[0] for o in options}
    if api_opts and "api_url" not in names:
        options.insert(0, "api_url=" + emulator.url)
    if api_opts and emulator.cafile and "cafile" not in names:
        options.insert(1, "cafile=" + emulator.cafile)
    return ["-f", *flags] + (["-o", ",".join(options)] if options else [])


class Daemon:
    """./ncloudfs running in the foreground on one mountpoint, output to a log file."""

    def __init__(self, mountpoint, args, env, log_path):
        """Describe the run; start() launches it."""
        self.path = Path(mountpoint)
        self.args = list(args)
        self.env = env
        self.log_path = Path(log_path)
        self.proc = None

    def start(self):
        """Launch the daemon; fail with a clear message if it was not built."""
        if not os.access(DAEMON, os.X_OK):
            raise MountError("%s is missing or not executable: run `make` at the repo root"
                             % DAEMON)
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([str(DAEMON), *self.args, str(self.path)], env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def log(self):
        """Return the daemon's output so far."""
        return self.log_path.read_text(errors="replace")

    def mounted(self):
        """Tell whether the mount is live."""
        return mountinfo_has(self.path)

    def wait_mounted(self, timeout=START_TIMEOUT):
        """Wait until the mount is live; raise MountError if the daemon exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.mounted():
                return self
            if self.proc.poll() is not None:
                raise MountError("ncloudfs exited %d before mounting:\n%s"
                                 % (self.proc.returncode, self.log()))
            time.sleep(0.05)
        raise MountError("ncloudfs did not mount in %.0f s:\n%s" % (timeout, self.log()))

    def wait_exit(self, timeout=START_TIMEOUT):
        """Wait for the daemon to exit on its own; return its exit code or None."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def unmount(self):
        """Unmount, wait for the daemon to exit (kill it if it won't); return its exit code."""
        if self.mounted():
            fusermount_unmount(self.path)
        code = self.wait_exit(STOP_TIMEOUT)
        if code is None:
            self.proc.terminate()
            code = self.wait_exit(STOP_TIMEOUT)
        if code is None:
            self.proc.kill()
            code = self.proc.wait()
        if self.mounted():
            fusermount_unmount(self.path)
        return code
