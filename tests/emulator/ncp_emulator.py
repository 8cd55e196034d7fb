#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""NCP API emulator: the three /vserver/v2 server-image calls, signed like the real gateway.

Serves getRegionList, getServerImageList and getServerImageDetail over HTTPS
(or HTTP with --http) on 127.0.0.1, with API Gateway signature v2 checks, the
gateway's and the service's error shapes, and a control API under /_emu/ (no
auth, JSON) for tests: counters, latency, injected faults, random faults
("chaos"), data edits, paging quirks, and a log of recent requests with the
emulator's own timestamps ("received" when the request arrived, "answered" when
the answer, or the dropped connection, went out; epoch seconds as floats; and
"latency", the delay the emulator added before answering).

Paging quirks of getServerImageList (--page-cap/--overlap, or POST /_emu/paging):
  cap N: a gateway that answers at most N rows a page. It pages by the size it
    really serves: with S = min(pageSize, N), page k covers rows (k-1)*S ..
    k*S-1, so a client that keeps asking for the next page number until it has
    totalRows distinct rows (a short page does not mean the end) lists
    everything. totalRows stays the true total.
  overlap K: rows shift between pages, as when images are created during a
    listing: each page after the first starts K rows before the end of the page
    before it, so page k covers rows (k-1)*(S-K) .. (k-1)*(S-K)+S-1 and the last
    K rows of page k come again at the start of page k+1. totalRows is
    unchanged; a client must count distinct rows and drop the repeats. K is
    taken as at most S-1 so that every page brings something new.

Retry-After: a 429 fault always carries one (retry_after seconds, default 1); a
503 fault carries one when the fault gives retry_after. With "retry_after_date"
the header is an HTTP-date (RFC 7231 IMF-fixdate) retry_after seconds ahead,
rounded up to the next whole second, instead of delta seconds.

Sample data, deterministic for a given --seed: KR/3135 is the API guide's
example; KR has --images more numbered from 100001, SGN and JPN five each
(200001.., 300001..). For a generated image with index k = no - first number:
k % 5 == 4 serves numbers as strings, k % 7 == 6 lacks serverImageDescription
and (alternately) blockStorageMappingList or sharedLoginIdList, k % 9 == 4 has
serverImageDescription null, k % 11 == 3 has a non-ASCII name, and k == 1 has a
description with spaces and punctuation.
"""

import argparse
import base64
import copy
import email.utils
import hashlib
import hmac
import http.server
import json
import math
import os
import random
import signal
import socket
import ssl
import struct
import sys
import threading
import time
import urllib.parse
import uuid
from xml.sax.saxutils import escape

ACTIONS = ("getRegionList", "getServerImageList", "getServerImageDetail")
API_PREFIX = "/vserver/v2/"
REGIONS = (("KR", "Korea"), ("SGN", "Singapore"), ("JPN", "Japan"))
TIMESTAMP_WINDOW_MS = 300_000
HANG_SECONDS = 60
CHAOS_HANG_SECONDS = 3
MAX_PAGE_SIZE = 1000
REQUEST_LOG_SIZE = 1000

# Gateway errors: HTTP status, errorCode, message.
GW_BAD_REQUEST = (400, "100", "Bad Request Exception")
GW_AUTH_FAILED = (401, "200", "Authentication Failed")
GW_FORBIDDEN = (403, "230", "Forbidden")
GW_NOT_FOUND = (404, "300", "Not Found Exception")
GW_RATE_LIMITED = (429, "420", "Rate Limited")
GW_UNEXPECTED = (500, "900", "Unexpected Error")
GW_ENDPOINT_ERROR = (503, "500", "Endpoint Error")
GW_ENDPOINT_TIMEOUT = (504, "510", "Endpoint Timeout")

# Service errors (HTTP 400 responseError): returnCode, message prefix.
SVC_MISSING_PARAM = ("200102", "Required parameter is missing: ")
SVC_INVALID_PARAM = ("200103", "Invalid parameter value: ")
SVC_INVALID_REGION = ("200104", "Invalid region code: ")
SVC_IMAGE_NOT_FOUND = ("200202", "Server image not found.")

FAULT_KINDS = ("500", "503", "504", "429", "401", "403", "hang", "malformed",
               "truncated", "nonjson", "xml", "reset")
GATEWAY_FAULTS = {"500": GW_UNEXPECTED, "503": GW_ENDPOINT_ERROR, "504": GW_ENDPOINT_TIMEOUT,
                  "429": GW_RATE_LIMITED, "401": GW_AUTH_FAILED, "403": GW_FORBIDDEN}

JSON_TYPE = "application/json;charset=UTF-8"
XML_TYPE = "application/xml;charset=UTF-8"


def code(c, name):
    """Return an NCP common code object."""
    return {"code": c, "codeName": name}


def guide_example_image():
    """Return the API guide's getServerImageDetail example, masked digits filled in."""
    return {
        "serverImageNo": "3135",
        "serverImageName": "test-img",
        "serverImageType": code("SELF", "SELF server image"),
        "serverImageLifeCyclePhase": code("IN_SERVICE", "In Service"),
        "hypervisorType": code("KVM", "KVM"),
        "cpuArchitectureType": code("X86_64", "x86 64bit"),
        "osCategoryType": code("LINUX", "LINUX"),
        "osType": code("UBUNTU", "UBUNTU"),
        "serverImageStatus": code("CREAT", "NSI CREATED state"),
        "serverImageOperation": code("NULL", "NSI NULL OP"),
        "serverImageStatusName": "created",
        "shareStatus": code("NULL", "NSI Share NULL State"),
        "blockStorageMappingList": [{
            "order": 0,
            "blockStorageSnapshotInstanceNo": 4697,
            "blockStorageSnapshotName": "test-snap",
            "blockStorageSize": 10737418240,
            "blockStorageVolumeType": code("CB1", "Common BlockStorage 1"),
            "iops": 100,
            "throughput": 104857600,
            "isEncryptedVolume": False,
        }],
        "sharedLoginIdList": [],
        "serverImageProductCode": "SW.VSVR.OS.LNX64.UBNTU.SVR24.G003",
        "createDate": "2025-06-20T09:59:39+0900",
        "platformCategoryCode": "OS",
    }


# osType code, osCategoryType code, product code.
OS_CHOICES = (
    ("UBUNTU", "LINUX", "SW.VSVR.OS.LNX64.UBNTU.SVR24.G003"),
    ("CENTOS", "LINUX", "SW.VSVR.OS.LNX64.CNTOS.0708.G002"),
    ("ROCKY", "LINUX", "SW.VSVR.OS.LNX64.ROCKY.0810.G002"),
    ("WINDOWS", "WINDOWS", "SW.VSVR.OS.WND64.WND.SVR2022EN.G002"),
)
VOLUME_TYPES = (("CB1", "Common BlockStorage 1"), ("SSD", "SSD"), ("HDD", "HDD"))
IMAGE_TYPES = (("SELF", "SELF server image"), ("NCP", "NCP server image"))
HYPERVISORS = (("KVM", "KVM"), ("XEN", "XEN"))
SHARE_STATUSES = (("NULL", "NSI Share NULL State"), ("SHARED", "NSI Shared State"))
SIZES_GIB = (10, 50, 100, 200, 1024)
NON_ASCII_NAMES = {"KR": "웹서버", "SGN": "máy-chủ", "JPN": "画像"}
PUNCTUATED_DESCRIPTION = "Web server (nginx 1.24), built 2024-05-01: ready & tested!"


def stringify_numbers(image):
    """Serve the image's block storage numbers as strings, as old API versions did."""
    for m in image.get("blockStorageMappingList") or []:
        for key in ("order", "blockStorageSnapshotInstanceNo", "blockStorageSize", "iops",
                    "throughput"):
            m[key] = str(m[key])


def generate_mappings(rng, no):
    """Return 1 to 3 block storage mappings for image no."""
    mappings = []
    for order in range(rng.randint(1, 3)):
        size_gib = SIZES_GIB[0] if order == 0 else rng.choice(SIZES_GIB)
        mappings.append({
            "order": order,
            "blockStorageSnapshotInstanceNo": 5_000_000 + int(no) * 4 + order,
            "blockStorageSnapshotName": "snap-%s-%d" % (no, order),
            "blockStorageSize": size_gib << 30,
            "blockStorageVolumeType": code(*rng.choice(VOLUME_TYPES)),
            "iops": rng.choice((100, 3000, 4000)),
            "throughput": rng.choice((104857600, 262144000)),
            "isEncryptedVolume": rng.random() < 0.3,
        })
    return mappings


def generate_image(rng, region, no, k):
    """Return generated image number no (index k in its region), quirks per the module doc."""
    os_code, os_category, product = rng.choice(OS_CHOICES)
    name = ("%s-%s" % (NON_ASCII_NAMES[region], no)) if k % 11 == 3 else "img-%s" % no
    created = time.gmtime(1_600_000_000 + rng.randrange(150_000_000))
    image = {
        "serverImageNo": no,
        "serverImageName": name,
        "serverImageDescription": PUNCTUATED_DESCRIPTION if k == 1 else "image %s" % no,
        "serverImageType": code(*rng.choice(IMAGE_TYPES)),
        "serverImageLifeCyclePhase": code("IN_SERVICE", "In Service"),
        "hypervisorType": code(*rng.choice(HYPERVISORS)),
        "cpuArchitectureType": code("X86_64", "x86 64bit"),
        "osCategoryType": code(os_category, os_category),
        "osType": code(os_code, os_code),
        "serverImageStatus": code("CREAT", "NSI CREATED state"),
        "serverImageOperation": code("NULL", "NSI NULL OP"),
        "serverImageStatusName": "created",
        "shareStatus": code(*rng.choice(SHARE_STATUSES)),
        "blockStorageMappingList": generate_mappings(rng, no),
        "sharedLoginIdList": ["user%d@example.com" % rng.randint(1, 99)] if k % 4 == 2 else [],
        "serverImageProductCode": product,
        "createDate": time.strftime("%Y-%m-%dT%H:%M:%S+0900", created),
        "platformCategoryCode": "OS",
    }
    if k % 5 == 4:
        stringify_numbers(image)
    if k % 9 == 4:
        image["serverImageDescription"] = None
    if k % 7 == 6:
        del image["serverImageDescription"]
        del image["blockStorageMappingList" if k % 14 == 6 else "sharedLoginIdList"]
    return image


def generate_data(images, seed):
    """Return {region: {serverImageNo: image}} for the given image count and seed."""
    rng = random.Random(seed)
    counts = {"KR": images, "SGN": 5, "JPN": 5}
    firsts = {"KR": 100001, "SGN": 200001, "JPN": 300001}
    data = {"KR": {"3135": guide_example_image()}}
    for region, _ in REGIONS:
        table = data.setdefault(region, {})
        for k in range(counts[region]):
            no = str(firsts[region] + k)
            table[no] = generate_image(rng, region, no, k)
    return data


def image_sort_key(no):
    """Sort serverImageNo numerically, anything non-numeric last."""
    return (0, int(no), "") if no.isdigit() else (1, 0, no)


def xml_element(name, value):
    """Render value as XML element name; list items are named after the list."""
    if isinstance(value, dict):
        inner = "".join(xml_element(k, v) for k, v in value.items())
    elif isinstance(value, list):
        item = name[:-4] if name.endswith("List") and len(name) > 4 else "item"
        inner = "".join(xml_element(item, v) for v in value)
    elif value is None:
        inner = ""
    elif isinstance(value, bool):
        inner = "true" if value else "false"
    else:
        inner = escape(str(value))
    return "<%s>%s</%s>" % (name, inner, name)


def to_xml(obj):
    """Render a one-key response object as an XML document."""
    (root, value), = obj.items()
    return '<?xml version="1.0" encoding="UTF-8"?>' + xml_element(root, value)


def sign_v2(secret, method, uri, timestamp, access_key):
    """Return the API Gateway v2 signature of one request."""
    message = "%s %s\n%s\n%s" % (method, uri, timestamp, access_key)
    digest = hmac.new(secret.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class ServiceError(Exception):
    """A service-level error: HTTP 400 with a responseError body."""

    def __init__(self, error, detail=""):
        """Build from a (returnCode, message) pair and a detail appended to the message."""
        super().__init__(error[1] + detail)
        self.return_code = error[0]
        self.message = error[1] + detail


class ControlError(Exception):
    """A bad control API request: HTTP 400 {"error": message}."""


class State:
    """Everything the emulator holds: data, counters, faults; guarded by one lock."""

    def __init__(self, data, access_key, secret_key, latency, notfound, page_cap=0, overlap=0):
        """Start with the given data, credentials and behaviour."""
        self.lock = threading.Lock()
        self.data = data
        self.sorted_nos = {}
        self.access_key = access_key
        self.secret_key = secret_key
        self.latency = {"*": latency}
        self.notfound = notfound
        self.page_cap = page_cap
        self.overlap = overlap
        self.skew_ms = 0
        self.faults = []
        self.release = threading.Event()
        self.stopping = threading.Event()
        self.conn_serial = 0
        self.chaos = None
        self.chaos_rng = random.Random()
        self.reset_counters()

    def reset_counters(self):
        """Zero every counter and forget the request log."""
        self.calls = dict.fromkeys(ACTIONS, 0)
        self.calls_by_status = {}
        self.connections = 0
        self.api_connections = 0
        self.auth_failures = 0
        self.requests = []
        self.chaos_counts = {}

    def now_ms(self):
        """Return the emulator's clock in epoch milliseconds, skew included."""
        return int(time.time() * 1000) + self.skew_ms

    def next_conn(self):
        """Return a fresh connection serial number."""
        with self.lock:
            self.conn_serial += 1
            return self.conn_serial

    def record(self, action, status, conn, method, target, received, answered, latency,
               retry_after):
        """Count one finished API request; log it with its times, the latency it was given
        and the Retry-After it was sent (if any)."""
        with self.lock:
            if action in self.calls:
                self.calls[action] += 1
                key = "%s %d" % (action, status)
                self.calls_by_status[key] = self.calls_by_status.get(key, 0) + 1
            entry = {"action": action, "method": method, "target": target, "status": status,
                     "conn": conn, "received": received, "answered": answered,
                     "latency": latency}
            if retry_after is not None:
                entry["retry_after"] = retry_after
            self.requests.append(entry)
            del self.requests[:-REQUEST_LOG_SIZE]

    def counts(self):
        """Return the counters as the /_emu/counts JSON object ("chaos" once it was set)."""
        with self.lock:
            counts = {"calls": dict(self.calls), "calls_by_status": dict(self.calls_by_status),
                      "connections": self.connections, "api_connections": self.api_connections,
                      "auth_failures": self.auth_failures}
            if self.chaos is not None:
                counts["chaos"] = dict(self.chaos_counts)
            return counts

    def images_sorted(self, region):
        """Return the region's images in ascending serverImageNo order."""
        with self.lock:
            nos = self.sorted_nos.get(region)
            if nos is None:
                nos = sorted(self.data[region], key=image_sort_key)
                self.sorted_nos[region] = nos
            return [self.data[region][no] for no in nos]

    def image(self, region, no):
        """Return one image or None."""
        with self.lock:
            return self.data.get(region, {}).get(no)

    def put_image(self, region, no, image):
        """Insert or replace image number no (images are replaced, never edited in place)."""
        with self.lock:
            self.data[region][no] = image
            self.sorted_nos.pop(region, None)

    def delete_image(self, region, no):
        """Remove an image; return whether it existed."""
        with self.lock:
            self.sorted_nos.pop(region, None)
            return self.data[region].pop(no, None) is not None

    def add_fault(self, fault):
        """Queue a fault for the next matching call(s)."""
        with self.lock:
            self.faults.append(fault)

    def take_fault(self, action, query):
        """Consume and return the first fault matching this call's query, or None."""
        with self.lock:
            for fault in self.faults:
                if fault["action"] not in ("*", action) or fault["match"] not in query:
                    continue
                if fault["count"] > 0:
                    fault["count"] -= 1
                    if fault["count"] == 0:
                        self.faults.remove(fault)
                return fault
        return None

    def set_chaos(self, chaos, seed):
        """Fail each later call with probability chaos["rate"] (0 turns it off)."""
        with self.lock:
            self.chaos = chaos
            self.chaos_rng = random.Random(seed)

    def take_chaos(self):
        """Return a random fault for this call, or None; count it by kind."""
        with self.lock:
            chaos = self.chaos
            if not chaos or self.chaos_rng.random() >= chaos["rate"]:
                return None
            kind = self.chaos_rng.choice(chaos["kinds"])
            self.chaos_counts[kind] = self.chaos_counts.get(kind, 0) + 1
            retry_after = chaos["retry_after"] if kind == "429" else None
            return {"kind": kind, "retry_after": retry_after,
                    "hang_seconds": chaos["hang_seconds"]}

    def clear_faults(self):
        """Drop every fault and release every hanging request."""
        with self.lock:
            self.faults = []
            self.release.set()
            self.release = threading.Event()

    def hang(self, seconds=HANG_SECONDS):
        """Block up to seconds, until faults are cleared or the emulator stops."""
        with self.lock:
            release = self.release
        deadline = time.monotonic() + seconds
        while not self.stopping.is_set() and time.monotonic() < deadline:
            if release.wait(0.2):
                return

    def delay(self, action):
        """Sleep the latency configured for action (interruptible by shutdown); return it."""
        with self.lock:
            seconds = self.latency.get(action, self.latency["*"])
        if seconds > 0:
            self.stopping.wait(seconds)
        return seconds


def first_page(params, cap=0, overlap=0):
    """Return (offset, size) from pageNo/pageSize, raising ServiceError when invalid.

    A page cap and an overlap shape the pages as the module doc says."""
    size = int_param(params, "pageSize", MAX_PAGE_SIZE)
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ServiceError(SVC_INVALID_PARAM, "pageSize must be between 1 and 1000")
    page = int_param(params, "pageNo", 0)
    if page < 0:
        raise ServiceError(SVC_INVALID_PARAM, "pageNo must not be negative")
    if cap > 0:
        size = min(size, cap)
    step = size - min(overlap, size - 1)
    return max(page - 1, 0) * step, size


def int_param(params, name, default):
    """Return an integer parameter or default, raising ServiceError when not numeric."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw, 10)
    except ValueError:
        raise ServiceError(SVC_INVALID_PARAM, "%s must be a number" % name) from None


def region_param(state, params):
    """Return the regionCode parameter (default KR), raising ServiceError when unknown."""
    region = params.get("regionCode") or "KR"
    if region not in state.data:
        raise ServiceError(SVC_INVALID_REGION, region)
    return region


def api_region_list(state, params):
    """getRegionList."""
    regions = [{"regionCode": c, "regionName": n} for c, n in REGIONS]
    return {"totalRows": len(regions), "regionList": regions}


def api_image_list(state, params):
    """getServerImageList: filter by serverImageNoList.N, then one page."""
    region = region_param(state, params)
    with state.lock:
        cap, overlap = state.page_cap, state.overlap
    offset, size = first_page(params, cap, overlap)
    wanted = {v for k, v in params.items() if k.startswith("serverImageNoList.")}
    images = state.images_sorted(region)
    if wanted:
        images = [i for i in images if str(i.get("serverImageNo")) in wanted]
    return {"totalRows": len(images), "serverImageList": images[offset:offset + size]}


def api_image_detail(state, params):
    """getServerImageDetail: one image, or not found per the notfound mode."""
    no = params.get("serverImageNo")
    if not no:
        raise ServiceError(SVC_MISSING_PARAM, "serverImageNo")
    image = state.image(region_param(state, params), no)
    if image is not None:
        return {"totalRows": 1, "serverImageList": [image]}
    if state.notfound == "400":
        raise ServiceError(SVC_IMAGE_NOT_FOUND)
    return {"totalRows": 0, "serverImageList": []}


API_HANDLERS = {"getRegionList": api_region_list, "getServerImageList": api_image_list,
                "getServerImageDetail": api_image_detail}


def json_body(obj):
    """Encode obj as UTF-8 JSON."""
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def gateway_error(error, details):
    """Return (status, body) of a gateway error."""
    status, error_code, message = error
    return status, {"error": {"errorCode": error_code, "message": message, "details": details}}


class Handler(http.server.BaseHTTPRequestHandler):
    """One connection: API calls under /vserver/v2/, control calls under /_emu/."""

    protocol_version = "HTTP/1.1"
    server_version = "ncp-emulator"
    sys_version = ""
    # Headers and body go out in separate writes: without this, Nagle and the
    # client's delayed ACK add 40 ms to every answer on a kept-alive connection.
    disable_nagle_algorithm = True

    def setup(self):
        """Finish the TLS handshake in this thread, then set up the streams."""
        self.conn = self.server.state.next_conn()
        self.carried_api = False
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def log_message(self, format, *args):
        """Log only with --verbose."""
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self):
        """Route a GET."""
        self.route(b"")

    def do_POST(self):
        """Route a POST (its body is read before anything else, for keep-alive)."""
        length = int(self.headers.get("Content-Length") or 0)
        self.route(self.rfile.read(length) if length > 0 else b"")

    def route(self, body):
        """Send the request to the control API or the API."""
        path = self.path.partition("?")[0]
        if path.startswith("/_emu/"):
            self.control(path, body)
        else:
            self.api(path, body)

    # --- answering -------------------------------------------------------

    def send(self, status, body, content_type=JSON_TYPE, headers=(), length=None):
        """Send a complete answer (Content-Length always set); note when it went out. An API
        answer is logged before it is sent, so that a client that has it finds it logged."""
        self.answered = time.time()
        self.log_api(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status, obj, headers=()):
        """Send obj as JSON."""
        self.send(status, json_body(obj), JSON_TYPE, headers)

    def send_formatted(self, status, obj, as_json):
        """Send obj as JSON or XML."""
        if as_json:
            self.send_json(status, obj)
        else:
            self.send(status, to_xml(obj).encode("utf-8"), XML_TYPE)

    def drop(self, rst):
        """Close the connection without answering, with a TCP reset if rst."""
        self.answered = time.time()
        if rst:
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    # --- API -------------------------------------------------------------

    def api(self, path, body):
        """Authenticate, count, delay, fault or answer one API call."""
        self.answered = None
        self.latency = 0
        self.retry_after = None
        state = self.server.state
        action = path[len(API_PREFIX):] if path.startswith(API_PREFIX) else None
        action = action if action in API_HANDLERS else None
        self.unlogged = (action, time.time())
        if not self.carried_api:
            self.carried_api = True
            with state.lock:
                state.api_connections += 1
        status = self.answer_api(state, action, body)
        self.log_api(status)  # not answered (dropped, hung up): logged now

    def log_api(self, status):
        """Log the API request being answered, once."""
        if getattr(self, "unlogged", None) is None:
            return
        action, received = self.unlogged
        self.unlogged = None
        self.server.state.record(action, status, self.conn, self.command, self.path, received,
                                 self.answered or time.time(), self.latency, self.retry_after)

    def answer_api(self, state, action, body):
        """Answer one API call; return the HTTP status sent (0 if none)."""
        auth_error = self.auth_error(state)
        if auth_error:
            with state.lock:
                state.auth_failures += 1
            return self.send_gateway(GW_AUTH_FAILED, auth_error)
        if action is None:
            return self.send_gateway(GW_NOT_FOUND, "The requested URL %s was not found."
                                     % self.path.partition("?")[0])
        params = self.params(body)
        as_json = params.get("responseFormatType", "").lower() == "json"
        self.latency = state.delay(action)
        query = self.path.partition("?")[2] + "&" + body.decode("utf-8", "replace")
        fault = state.take_fault(action, query) or state.take_chaos()
        if fault:
            return self.send_fault(state, fault, action, params, as_json)
        status, obj = self.run_action(state, action, params)
        self.send_formatted(status, obj, as_json)
        return status

    def auth_error(self, state):
        """Return why the request fails authentication, or None."""
        ts = self.headers.get("x-ncp-apigw-timestamp")
        key = self.headers.get("x-ncp-iam-access-key")
        sig = self.headers.get("x-ncp-apigw-signature-v2")
        invalid = "Invalid authentication information."
        if not ts or not key or not sig or not (ts.isascii() and ts.isdigit()):
            return invalid
        if abs(state.now_ms() - int(ts)) > TIMESTAMP_WINDOW_MS:
            return "Invalid timestamp: the request has expired or is not yet valid " \
                   "(allowed skew is 5 minutes)."
        if key != state.access_key:
            return invalid
        expected = sign_v2(state.secret_key, self.command, self.path, ts, key)
        if not hmac.compare_digest(expected.encode(), sig.encode()):
            return invalid
        return None

    def params(self, body):
        """Return the query parameters, overlaid by a form body, first value of each."""
        pairs = urllib.parse.parse_qsl(self.path.partition("?")[2], keep_blank_values=True)
        if body:
            pairs += urllib.parse.parse_qsl(body.decode("utf-8", "replace"),
                                            keep_blank_values=True)
        params = {}
        for name, value in pairs:
            params.setdefault(name, value)
        return params

    def run_action(self, state, action, params):
        """Return (status, response object) of a call that is not faulted."""
        try:
            result = API_HANDLERS[action](state, params)
        except ServiceError as e:
            return 400, {"responseError": {"returnCode": e.return_code,
                                           "returnMessage": e.message}}
        result.update(requestId=str(uuid.uuid4()), returnCode="0", returnMessage="success")
        return 200, {action + "Response": result}

    def send_gateway(self, error, details, headers=()):
        """Send a gateway error (always JSON, as the gateway does); return its status."""
        status, obj = gateway_error(error, details)
        self.send_json(status, obj, headers)
        return status

    def send_fault(self, state, fault, action, params, as_json):
        """Misbehave as the fault says; return the status sent (0 if none)."""
        kind = fault["kind"]
        if kind in GATEWAY_FAULTS:
            headers = []
            seconds = fault.get("retry_after")
            if kind == "429" and seconds is None:
                seconds = 1
            if kind in ("429", "503") and seconds is not None:
                if fault.get("retry_after_date"):
                    self.retry_after = email.utils.formatdate(
                        math.ceil(time.time() + seconds), usegmt=True)
                else:
                    self.retry_after = str(seconds)
                headers.append(("Retry-After", self.retry_after))
            return self.send_gateway(GATEWAY_FAULTS[kind], "Injected fault.", headers)
        if kind in ("hang", "reset"):
            if kind == "hang":
                state.hang(fault.get("hang_seconds", HANG_SECONDS))
            self.drop(rst=kind == "reset")
            return 0
        if kind == "nonjson":
            page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
            self.send(200, page, "text/html;charset=UTF-8")
            return 200
        if kind == "malformed":
            garbage = ('{"%sResponse": {"totalRows": 1, "serverImageList": [{"serverImageNo": '
                       '"3135",, \x01garbage' % action)
            self.send(200, garbage.encode("utf-8"))
            return 200
        status, obj = self.run_action(state, action, params)
        if kind == "xml":
            self.send_formatted(status, obj, False)
        else:
            body = json_body(obj)
            self.send(status, body[:len(body) // 2], length=len(body))
            self.close_connection = True
        return status

    # --- control ---------------------------------------------------------

    def control(self, path, body):
        """Answer a control API call."""
        try:
            arg = json.loads(body) if body.strip() else {}
            query = dict(urllib.parse.parse_qsl(self.path.partition("?")[2]))
            handler = CONTROL.get((self.command, path))
            if handler is None:
                self.send_json(404, {"error": "no control call %s %s" % (self.command, path)})
                return
            status, result = handler(self.server.state, arg, query)
            self.send_json(status, result)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError, ControlError) as e:
            self.send_json(400, {"error": "%s: %s" % (type(e).__name__, e)})


def need_region(state, region):
    """Return region if the emulator knows it, else raise ControlError."""
    if region not in state.data:
        raise ControlError("unknown region %r" % region)
    return region


def ctl_counts(state, arg, query):
    """GET /_emu/counts."""
    return 200, state.counts()


def ctl_requests(state, arg, query):
    """GET /_emu/requests: the last API requests, oldest first."""
    with state.lock:
        return 200, list(state.requests)


def ctl_reset(state, arg, query):
    """POST /_emu/reset: zero the counters."""
    with state.lock:
        state.reset_counters()
    return 200, {"ok": True}


def ctl_latency(state, arg, query):
    """POST /_emu/latency {"seconds", "action"?}."""
    seconds = float(arg["seconds"])
    action = arg.get("action") or "*"
    if action != "*" and action not in ACTIONS:
        raise ControlError("unknown action %r" % action)
    with state.lock:
        state.latency[action] = seconds
    return 200, {"ok": True}


def ctl_fault(state, arg, query):
    """POST /_emu/fault {"action", "kind", "count"?, "retry_after"?, "retry_after_date"?,
    "match"?}: retry_after (seconds) is sent on a 429 (default 1) or a 503 (none unless
    given); retry_after_date sends it as an HTTP-date that many seconds ahead."""
    action = arg.get("action", "*")
    kind = str(arg["kind"])
    count = int(arg.get("count", 1))
    if action != "*" and action not in ACTIONS:
        raise ControlError("unknown action %r" % action)
    if kind not in FAULT_KINDS:
        raise ControlError("unknown fault kind %r" % kind)
    if count == 0 or count < -1:
        raise ControlError("count must be positive or -1")
    retry_after = arg.get("retry_after")
    if retry_after is not None:
        retry_after = int(retry_after)
        if retry_after < 0:
            raise ControlError("retry_after must not be negative")
    state.add_fault({"action": action, "kind": kind, "count": count,
                     "retry_after": retry_after,
                     "retry_after_date": bool(arg.get("retry_after_date", False)),
                     "match": str(arg.get("match", ""))})
    return 200, {"ok": True}


def ctl_chaos(state, arg, query):
    """POST /_emu/chaos {"rate", "kinds"?, "hang_seconds"?, "retry_after"?, "seed"?}."""
    rate = float(arg["rate"])
    if not 0 <= rate <= 1:
        raise ControlError("rate must be between 0 and 1")
    kinds = [str(k) for k in arg.get("kinds", FAULT_KINDS)]
    unknown = [k for k in kinds if k not in FAULT_KINDS]
    if unknown or not kinds:
        raise ControlError("kinds must be a non-empty list of %s" % ", ".join(FAULT_KINDS))
    hang_seconds = float(arg.get("hang_seconds", CHAOS_HANG_SECONDS))
    if hang_seconds < 0:
        raise ControlError("hang_seconds must not be negative")
    chaos = {"rate": rate, "kinds": kinds, "hang_seconds": hang_seconds,
             "retry_after": int(arg.get("retry_after", 1))}
    state.set_chaos(chaos if rate > 0 else {}, arg.get("seed"))
    return 200, {"ok": True}


def ctl_fault_clear(state, arg, query):
    """POST /_emu/fault/clear: drop faults, release hangs."""
    state.clear_faults()
    return 200, {"ok": True}


def ctl_put_image(state, arg, query):
    """POST /_emu/image {"region", "image"}: upsert by serverImageNo."""
    image = arg["image"]
    if not isinstance(image, dict) or "serverImageNo" not in image:
        raise ControlError("image must be an object with serverImageNo")
    state.put_image(need_region(state, arg["region"]), str(image["serverImageNo"]), image)
    return 200, {"ok": True}


def ctl_delete_image(state, arg, query):
    """POST /_emu/image/delete {"region", "no"}."""
    found = state.delete_image(need_region(state, arg["region"]), str(arg["no"]))
    return (200, {"ok": True}) if found else (404, {"error": "no such image"})


def ctl_set_field(state, arg, query):
    """POST /_emu/image/set {"region", "no", "path", "value" | "delete": true}."""
    region, no, path = need_region(state, arg["region"]), str(arg["no"]), arg["path"]
    if not isinstance(path, list) or not path:
        raise ControlError("path must be a non-empty list of keys and indices")
    image = copy.deepcopy(state.image(region, no))
    if image is None:
        return 404, {"error": "no such image"}
    node = image
    for step in path[:-1]:
        node = node[step]
    if arg.get("delete"):
        del node[path[-1]]
    else:
        node[path[-1]] = arg["value"]
    state.put_image(region, no, image)
    return 200, {"ok": True}


def ctl_get_image(state, arg, query):
    """GET /_emu/image?region=&no=: the image as served."""
    image = state.image(need_region(state, query["region"]), query["no"])
    return (200, image) if image is not None else (404, {"error": "no such image"})


def ctl_list_images(state, arg, query):
    """GET /_emu/images?region=: serverImageNo list, ascending."""
    images = state.images_sorted(need_region(state, query.get("region", "KR")))
    return 200, [str(i["serverImageNo"]) for i in images]


def ctl_notfound(state, arg, query):
    """POST /_emu/notfound {"mode": "400" | "empty"}."""
    mode = str(arg["mode"])
    if mode not in ("400", "empty"):
        raise ControlError("mode must be 400 or empty")
    state.notfound = mode
    return 200, {"ok": True}


def rows_arg(arg, name):
    """Return arg[name] as a row count, 0 (off) when absent; raise ControlError if negative."""
    rows = int(arg.get(name) or 0)
    if rows < 0:
        raise ControlError("%s must not be negative" % name)
    return rows


def ctl_paging(state, arg, query):
    """POST /_emu/paging {"cap"?, "overlap"?}: page cap and overlap of getServerImageList
    (rows; 0 or absent turns each off), as the module doc says."""
    cap, overlap = rows_arg(arg, "cap"), rows_arg(arg, "overlap")
    with state.lock:
        state.page_cap, state.overlap = cap, overlap
    return 200, {"ok": True}


def ctl_clock(state, arg, query):
    """POST /_emu/clock {"skew_ms"}: shift the emulator's clock."""
    state.skew_ms = int(arg["skew_ms"])
    return 200, {"ok": True}


CONTROL = {
    ("GET", "/_emu/counts"): ctl_counts,
    ("GET", "/_emu/requests"): ctl_requests,
    ("POST", "/_emu/reset"): ctl_reset,
    ("POST", "/_emu/latency"): ctl_latency,
    ("POST", "/_emu/fault"): ctl_fault,
    ("POST", "/_emu/fault/clear"): ctl_fault_clear,
    ("POST", "/_emu/chaos"): ctl_chaos,
    ("POST", "/_emu/image"): ctl_put_image,
    ("POST", "/_emu/image/delete"): ctl_delete_image,
    ("POST", "/_emu/image/set"): ctl_set_field,
    ("GET", "/_emu/image"): ctl_get_image,
    ("GET", "/_emu/images"): ctl_list_images,
    ("POST", "/_emu/notfound"): ctl_notfound,
    ("POST", "/_emu/clock"): ctl_clock,
    ("POST", "/_emu/paging"): ctl_paging,
}


class Server(http.server.ThreadingHTTPServer):
    """Threaded server that counts connections and wraps them in TLS."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, port, state, ssl_context=None, verbose=False):
        """Bind 127.0.0.1:port."""
        self.state = state
        self.ssl_context = ssl_context
        self.verbose = verbose
        super().__init__(("127.0.0.1", port), Handler)

    def get_request(self):
        """Accept, count, and wrap (handshake deferred to the handler thread)."""
        sock, addr = super().get_request()
        with self.state.lock:
            self.state.connections += 1
        if self.ssl_context:
            sock = self.ssl_context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request, client_address):
        """Ignore clients that go away; print real bugs."""
        if not isinstance(sys.exc_info()[1], (OSError, ssl.SSLError)) or self.verbose:
            super().handle_error(request, client_address)

    def stop(self):
        """Stop serving, release hanging requests, close the socket."""
        self.state.stopping.set()
        self.state.clear_faults()
        self.shutdown()
        self.server_close()


def make_server(port=0, access_key="AK", secret_key="SK", images=20, seed=1, latency=0.0,
                notfound="400", cert=None, key=None, verbose=False, page_cap=0, overlap=0):
    """Return a bound (not yet serving) emulator; HTTPS when cert and key are given."""
    context = None
    if cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
    state = State(generate_data(images, seed), access_key, secret_key, latency, notfound,
                  page_cap, overlap)
    return Server(port, state, context, verbose)


def write_port_file(path, port):
    """Write the port to path atomically."""
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.replace(tmp, path)


def parse_args(argv):
    """Parse the command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--port-file")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    p.add_argument("--access-key", required=True)
    p.add_argument("--secret-key", required=True)
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--notfound", choices=("400", "empty"), default="400")
    p.add_argument("--page-cap", type=int, default=0, metavar="N",
                   help="answer at most N rows a page (0: no cap)")
    p.add_argument("--overlap", type=int, default=0, metavar="K",
                   help="start each page K rows before the end of the one before")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)
    if not args.http and not (args.cert and args.key):
        p.error("--cert and --key are required unless --http")
    if args.page_cap < 0 or args.overlap < 0:
        p.error("--page-cap and --overlap must not be negative")
    return args


def main(argv=None):
    """Run the emulator until SIGTERM or SIGINT."""
    args = parse_args(argv)
    server = make_server(args.port, args.access_key, args.secret_key, args.images, args.seed,
                         args.latency, args.notfound, None if args.http else args.cert,
                         args.key, args.verbose, args.page_cap, args.overlap)
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="serve",
                              daemon=True)
    thread.start()
    if args.port_file:
        write_port_file(args.port_file, server.server_address[1])
    signal.sigwait(stop_signals)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
