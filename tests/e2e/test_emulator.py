# SPDX-License-Identifier: MIT
"""Tests of the NCP emulator itself: it must behave like the real gateway, or the e2e tests lie."""

import email.utils
import http.client
import json
import re
import socket
import ssl
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import emu

ACTIONS = ("getRegionList", "getServerImageList", "getServerImageDetail")
AUTH_FAILED = {"error": {"errorCode": "200", "message": "Authentication Failed",
                         "details": "Invalid authentication information."}}
GUIDE = emu.REPO.parent / "shared" / "reference" / "getServerImageDetail.txt"
# The guide's example image, masked digits filled in as the emulator documents.
EXAMPLE_3135 = """{
 "serverImageNo": "3135", "serverImageName": "test-img",
 "serverImageType": {"code": "SELF", "codeName": "SELF server image"},
 "serverImageLifeCyclePhase": {"code": "IN_SERVICE", "codeName": "In Service"},
 "hypervisorType": {"code": "KVM", "codeName": "KVM"},
 "cpuArchitectureType": {"code": "X86_64", "codeName": "x86 64bit"},
 "osCategoryType": {"code": "LINUX", "codeName": "LINUX"},
 "osType": {"code": "UBUNTU", "codeName": "UBUNTU"},
 "serverImageStatus": {"code": "CREAT", "codeName": "NSI CREATED state"},
 "serverImageOperation": {"code": "NULL", "codeName": "NSI NULL OP"},
 "serverImageStatusName": "created",
 "shareStatus": {"code": "NULL", "codeName": "NSI Share NULL State"},
 "blockStorageMappingList": [{"order": 0, "blockStorageSnapshotInstanceNo": 4697,
   "blockStorageSnapshotName": "test-snap", "blockStorageSize": 10737418240,
   "blockStorageVolumeType": {"code": "CB1", "codeName": "Common BlockStorage 1"},
   "iops": 100, "throughput": 104857600, "isEncryptedVolume": false}],
 "sharedLoginIdList": [],
 "serverImageProductCode": "SW.VSVR.OS.LNX64.UBNTU.SVR24.G003",
 "createDate": "2025-06-20T09:59:39+0900", "platformCategoryCode": "OS"}"""


def ordered(text):
    """Parse JSON keeping key order (objects become lists of pairs)."""
    return json.loads(text, object_pairs_hook=list)


def detail(e, no, region=None, **kw):
    """Call getServerImageDetail."""
    params = {"regionCode": region} if region else {}
    params["serverImageNo"] = str(no)
    return e.call("getServerImageDetail", params, **kw)


def payload(response, action):
    """Return the <action>Response object of a successful JSON answer."""
    assert response.status == 200, response
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()[action + "Response"]
    assert body["returnCode"] == "0" and body["returnMessage"] == "success"
    uuid.UUID(body["requestId"])
    return body


def listing(e, **params):
    """Call getServerImageList and return its payload."""
    return payload(e.call("getServerImageList", params), "getServerImageList")


# --- authentication ---------------------------------------------------------

def test_signed_call_is_accepted(emulator):
    body = payload(emulator.call("getRegionList"), "getRegionList")
    assert body["regionList"] == [{"regionCode": "KR", "regionName": "Korea"},
                                  {"regionCode": "SGN", "regionName": "Singapore"},
                                  {"regionCode": "JPN", "regionName": "Japan"}]
    assert body["totalRows"] == 3


def test_bad_signature_is_rejected_with_the_gateway_body(emulator):
    r = emulator.call("getRegionList", secret_key="wrong-secret")
    assert r.status == 401
    assert r.json() == AUTH_FAILED


@pytest.mark.parametrize("header", ["x-ncp-apigw-timestamp", "x-ncp-iam-access-key",
                                    "x-ncp-apigw-signature-v2"])
def test_missing_auth_header_is_rejected(emulator, header):
    r = emulator.call("getRegionList", headers={header: None})
    assert (r.status, r.json()) == (401, AUTH_FAILED)


def test_unknown_access_key_is_rejected(emulator):
    r = emulator.call("getRegionList", access_key="SOMEONEELSE")
    assert (r.status, r.json()) == (401, AUTH_FAILED)


def test_signature_covers_the_raw_target_in_order(emulator):
    ts = str(emu.now_ms())
    path = "/vserver/v2/getServerImageDetail?"
    signed = path + "serverImageNo=3135&regionCode=KR&responseFormatType=json"
    sent = path + "regionCode=KR&serverImageNo=3135&responseFormatType=json"
    headers = {"x-ncp-apigw-timestamp": ts, "x-ncp-iam-access-key": emulator.access_key,
               "x-ncp-apigw-signature-v2": emu.sign(emulator.secret_key, "GET", signed, ts,
                                                    emulator.access_key)}
    assert emulator.request("GET", sent, headers).status == 401
    assert emulator.request("GET", signed, headers).status == 200


def test_percent_encoding_is_signed_as_sent(emulator):
    r = emulator.call("getServerImageList", [("regionCode", "KR"), ("serverImageName", "a b/c")])
    assert r.status == 200


@pytest.mark.parametrize("offset_s", [-360, 360])
def test_timestamp_outside_five_minutes_is_rejected(emulator, offset_s):
    r = emulator.call("getRegionList", timestamp=emu.now_ms() + offset_s * 1000)
    assert r.status == 401
    error = r.json()["error"]
    assert error["errorCode"] == "200" and error["message"] == "Authentication Failed"
    assert "timestamp" in error["details"].lower()


def test_timestamp_within_five_minutes_is_accepted(emulator):
    assert emulator.call("getRegionList", timestamp=emu.now_ms() - 240_000).status == 200


def test_clock_skew_moves_the_window(emulator):
    emulator.clock(10 * 60 * 1000)
    assert emulator.call("getRegionList").status == 401
    assert emulator.call("getRegionList", timestamp=emu.now_ms() + 600_000).status == 200


def test_post_form_body_is_not_signed(emulator):
    ts = str(emu.now_ms())
    uri = "/vserver/v2/getServerImageDetail"
    headers = {"x-ncp-apigw-timestamp": ts, "x-ncp-iam-access-key": emulator.access_key,
               "x-ncp-apigw-signature-v2": emu.sign(emulator.secret_key, "POST", uri, ts,
                                                    emulator.access_key),
               "Content-Type": "application/x-www-form-urlencoded"}
    r = emulator.request("POST", uri, headers,
                         body="regionCode=KR&serverImageNo=3135&responseFormatType=json")
    body = payload(r, "getServerImageDetail")
    assert body["serverImageList"][0]["serverImageNo"] == "3135"


# --- formats and routing ------------------------------------------------------

@pytest.mark.parametrize("fmt", [None, "xml"])
def test_xml_unless_json_is_asked(emulator, fmt):
    r = emulator.call("getServerImageDetail", {"serverImageNo": "100002"}, fmt=fmt)
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/xml")
    root = ET.fromstring(r.body)
    assert root.tag == "getServerImageDetailResponse"
    assert root.findtext("returnCode") == "0"
    image = root.find("serverImageList/serverImage")
    assert image.findtext("serverImageNo") == "100002"
    assert "&" in image.findtext("serverImageDescription")


def test_unknown_action_is_gateway_404(emulator):
    r = emulator.call("getServerInstanceList")
    assert r.status == 404
    assert r.json()["error"]["errorCode"] == "300"
    assert r.json()["error"]["message"] == "Not Found Exception"


def test_plain_http_mode(make_emulator):
    e = make_emulator(http=True)
    assert e.url.startswith("http://") and e.cafile is None
    payload(e.call("getRegionList"), "getRegionList")
    assert e.counts()["calls"]["getRegionList"] == 1


# --- getServerImageList -------------------------------------------------------

def test_page_zero_and_one_are_the_first_page(emulator):
    page0 = listing(emulator, regionCode="KR", pageNo=0, pageSize=5)
    page1 = listing(emulator, regionCode="KR", pageNo=1, pageSize=5)
    assert page0["serverImageList"] == page1["serverImageList"]
    assert [i["serverImageNo"] for i in page0["serverImageList"]] == \
        ["3135", "100001", "100002", "100003", "100004"]
    assert page0["totalRows"] == 21


def test_pages_cover_the_region_in_ascending_order(emulator):
    seen = []
    for page in range(1, 6):
        seen += [i["serverImageNo"] for i in
                 listing(emulator, regionCode="KR", pageNo=page, pageSize=5)["serverImageList"]]
    assert seen == emulator.images("KR")
    assert [int(n) for n in seen] == sorted(int(n) for n in seen) and len(seen) == 21


def test_default_region_and_page_size(emulator):
    body = listing(emulator)
    assert body["totalRows"] == 21 and len(body["serverImageList"]) == 21


@pytest.mark.emulator(images=2500)
def test_page_size_limit_is_1000(emulator):
    first = listing(emulator, regionCode="KR", pageNo=1, pageSize=1000)
    third = listing(emulator, regionCode="KR", pageNo=3, pageSize=1000)
    assert first["totalRows"] == 2501
    assert len(first["serverImageList"]) == 1000 and len(third["serverImageList"]) == 501
    assert len(listing(emulator, regionCode="KR")["serverImageList"]) == 1000


@pytest.mark.parametrize("params", [{"pageSize": 1001}, {"pageSize": 0}, {"pageSize": "x"},
                                    {"pageNo": "-1"}, {"regionCode": "MARS"}])
def test_bad_list_parameters_are_service_errors(emulator, params):
    r = emulator.call("getServerImageList", params)
    assert r.status == 400
    error = r.json()["responseError"]
    assert error["returnCode"] and error["returnMessage"]


def test_list_filter_by_number(emulator):
    body = listing(emulator, **{"regionCode": "KR", "serverImageNoList.1": "100003",
                                "serverImageNoList.2": "3135", "serverImageNoList.3": "999"})
    assert body["totalRows"] == 2
    assert [i["serverImageNo"] for i in body["serverImageList"]] == ["3135", "100003"]


def page_nos(e, page, size, region="KR"):
    """Return (totalRows, serverImageNo list) of one getServerImageList page."""
    body = listing(e, regionCode=region, pageNo=page, pageSize=size)
    return body["totalRows"], [i["serverImageNo"] for i in body["serverImageList"]]


def list_all(e, size, region="KR"):
    """List a region as a client should: next page numbers until totalRows distinct rows
    have come or a page is empty; return (every row in order, distinct rows, pages asked)."""
    rows, page = [], 0
    while True:
        page += 1
        total, nos = page_nos(e, page, size, region)
        rows += nos
        if not nos or len(set(rows)) >= total:
            return rows, set(rows), page


@pytest.mark.emulator(images=2500)
def test_page_cap_pages_by_the_size_served(emulator):
    emulator.paging(cap=300)
    everything = emulator.images("KR")
    total, first = page_nos(emulator, 1, 1000)
    assert (total, first) == (2501, everything[:300])
    assert page_nos(emulator, 2, 1000) == (2501, everything[300:600])
    assert page_nos(emulator, 9, 1000) == (2501, everything[2400:])
    assert page_nos(emulator, 10, 1000) == (2501, [])
    assert page_nos(emulator, 2, 100) == (2501, everything[100:200]), "under the cap: as asked"
    rows, distinct, pages = list_all(emulator, 1000)
    assert rows == everything and pages == 9
    emulator.paging(cap=0)
    assert page_nos(emulator, 1, 1000) == (2501, everything[:1000])


@pytest.mark.emulator(images=2500, page_cap=250)
def test_page_cap_from_the_command_line(emulator):
    rows, distinct, pages = list_all(emulator, 1000)
    assert rows == emulator.images("KR") and pages == 11


def test_overlap_repeats_the_end_of_each_page(emulator):
    emulator.paging(overlap=2)
    everything = emulator.images("KR")
    assert page_nos(emulator, 1, 5) == (21, everything[0:5])
    assert page_nos(emulator, 2, 5) == (21, everything[3:8])
    assert page_nos(emulator, 3, 5) == (21, everything[6:11])
    assert page_nos(emulator, 7, 5) == (21, everything[18:21])
    assert page_nos(emulator, 8, 5) == (21, [])
    rows, distinct, pages = list_all(emulator, 5)
    assert sorted(distinct, key=int) == everything and pages == 7
    assert len(rows) == 21 + 2 * 6, "the last two rows of every page but the last come twice"


def test_overlap_never_stalls_paging(emulator):
    emulator.paging(overlap=10)
    everything = emulator.images("KR")
    assert page_nos(emulator, 2, 4) == (21, everything[1:5]), "at most pageSize - 1 rows back"
    assert page_nos(emulator, 1, 1) == (21, everything[:1])
    assert page_nos(emulator, 2, 1) == (21, everything[1:2])


@pytest.mark.emulator(images=2500, page_cap=100, overlap=7)
def test_cap_and_overlap_together(emulator):
    everything = emulator.images("KR")
    assert page_nos(emulator, 1, 1000) == (2501, everything[0:100])
    assert page_nos(emulator, 2, 1000) == (2501, everything[93:193])
    rows, distinct, pages = list_all(emulator, 1000)
    assert sorted(distinct, key=int) == everything and pages == 27
    assert len(rows) > len(distinct)


def test_bad_paging_calls_are_400(emulator):
    for body in ({"cap": -1}, {"overlap": -1}, {"cap": "x"}):
        with pytest.raises(emu.EmulatorError, match="400"):
            emulator.control("POST", "paging", body)


def test_other_regions(emulator):
    assert emulator.images("SGN") == [str(n) for n in range(200001, 200006)]
    assert emulator.images("JPN") == [str(n) for n in range(300001, 300006)]
    assert listing(emulator, regionCode="JPN")["totalRows"] == 5


# --- getServerImageDetail -----------------------------------------------------

def test_detail_found(emulator):
    body = payload(detail(emulator, 3135, "KR"), "getServerImageDetail")
    assert body["totalRows"] == 1
    assert body["serverImageList"] == [emulator.image("KR", "3135")]


def test_detail_defaults_to_kr(emulator):
    assert payload(detail(emulator, 3135), "getServerImageDetail")["totalRows"] == 1
    assert detail(emulator, 3135, "SGN").status == 400


def test_detail_not_found_as_400(emulator):
    r = detail(emulator, 424242, "KR")
    assert r.status == 400
    assert r.json()["responseError"]["returnCode"] == "200202"


def test_detail_not_found_as_empty_list(emulator):
    emulator.notfound("empty")
    body = payload(detail(emulator, 424242, "KR"), "getServerImageDetail")
    assert body["totalRows"] == 0 and body["serverImageList"] == []


@pytest.mark.emulator(notfound="empty")
def test_notfound_mode_from_the_command_line(emulator):
    assert payload(detail(emulator, 1, "KR"), "getServerImageDetail")["totalRows"] == 0


def test_detail_without_number_is_a_service_error(emulator):
    r = emulator.call("getServerImageDetail", {"regionCode": "KR"})
    assert r.status == 400
    assert "serverImageNo" in r.json()["responseError"]["returnMessage"]


# --- data -----------------------------------------------------------------------

def test_sample_image_is_the_guide_example(emulator):
    r = detail(emulator, 3135, "KR")
    served = ordered(r.body)[0][1]
    image = dict(served)["serverImageList"][0]
    assert image == ordered(EXAMPLE_3135)


@pytest.mark.skipif(not GUIDE.exists(), reason="API guide not beside the repo")
def test_sample_image_matches_the_guide_text(emulator):
    text = GUIDE.read_text()
    example = text[text.index('{\n    "getServerImageDetailResponse"'):]
    example = example.replace('"*****3135"', '"3135"').replace("*****4697", "4697")
    example = example.replace('"test-***"', '"test-img"', 1).replace('"test-***"', '"test-snap"', 1)
    guide_image = dict(ordered(example)[0][1])["serverImageList"][0]
    assert guide_image == ordered(EXAMPLE_3135)


def test_generated_quirks(emulator):
    def image(k):
        return emulator.image("KR", str(100001 + k))
    assert image(4)["blockStorageMappingList"][0]["blockStorageSize"] == "10737418240"
    assert image(0)["blockStorageMappingList"][0]["blockStorageSize"] == 10737418240
    assert image(4)["serverImageDescription"] is None
    assert "serverImageDescription" not in image(6) and "blockStorageMappingList" not in image(6)
    assert "serverImageDescription" not in image(13) and "sharedLoginIdList" not in image(13)
    assert any(image(k).get("sharedLoginIdList") for k in range(20))
    assert not image(3)["serverImageName"].isascii()
    assert re.search(r"[ (),:&!]", image(1)["serverImageDescription"])
    os_types = {image(k)["osType"]["code"] for k in range(20)}
    assert os_types <= {"UBUNTU", "CENTOS", "ROCKY", "WINDOWS"} and len(os_types) > 1
    for k in range(20):
        i = image(k)
        assert "/" not in i["serverImageName"]
        assert (i["osCategoryType"]["code"] == "WINDOWS") == (i["osType"]["code"] == "WINDOWS")
        assert 1 <= len(i.get("blockStorageMappingList", [1])) <= 3


def test_same_seed_same_data(make_emulator):
    a, b, c = make_emulator(seed=7), make_emulator(seed=7), make_emulator(seed=8)
    assert a.image("KR", "100005") == b.image("KR", "100005")
    assert [a.image("KR", str(n)) for n in range(100001, 100021)] != \
        [c.image("KR", str(n)) for n in range(100001, 100021)]


def test_ten_thousand_images(make_emulator):
    e = make_emulator(images=10000)
    last = listing(e, pageNo=11, pageSize=1000)
    assert last["totalRows"] == 10001
    assert [i["serverImageNo"] for i in last["serverImageList"]] == ["110000"]
    assert len(listing(e, pageNo=10, pageSize=1000)["serverImageList"]) == 1000


def test_non_ascii_is_served_as_utf8(emulator):
    name = emulator.image("KR", "100004")["serverImageName"]
    r = detail(emulator, 100004)
    assert name.encode("utf-8") in r.body
    assert r.headers["Content-Type"] == "application/json;charset=UTF-8"


# --- control API ----------------------------------------------------------------

def test_set_field_and_delete_field(emulator):
    emulator.set_field("KR", 3135, ["osType", "code"], "ROCKY")
    emulator.set_field("KR", 3135, ["blockStorageMappingList", 0, "iops"], "3000")
    emulator.delete_field("KR", 3135, ["createDate"])
    image = payload(detail(emulator, 3135), "getServerImageDetail")["serverImageList"][0]
    assert image["osType"] == {"code": "ROCKY", "codeName": "UBUNTU"}
    assert image["blockStorageMappingList"][0]["iops"] == "3000"
    assert "createDate" not in image


def test_put_and_delete_image(emulator):
    emulator.put_image("SGN", {"serverImageNo": "250000", "serverImageName": "new"})
    assert emulator.images("SGN")[-1] == "250000"
    assert listing(emulator, regionCode="SGN")["totalRows"] == 6
    emulator.delete_image("SGN", "250000")
    assert detail(emulator, 250000, "SGN").status == 400


def test_bad_control_calls_are_400(emulator):
    with pytest.raises(emu.EmulatorError, match="400"):
        emulator.fault("teapot")
    with pytest.raises(emu.EmulatorError, match="400"):
        emulator.put_image("MARS", {"serverImageNo": "1"})
    with pytest.raises(emu.EmulatorError, match="404"):
        emulator.image("KR", "1")


def test_latency(emulator):
    """Measured by the emulator's own timestamps, never by how fast the test machine is."""
    emulator.latency(0.3, action="getServerImageDetail")
    detail(emulator, 3135)
    emulator.call("getRegionList")
    slow, other = emulator.requests()
    assert (slow["action"], slow["latency"]) == ("getServerImageDetail", 0.3)
    assert slow["answered"] - slow["received"] >= 0.3
    assert (other["action"], other["latency"]) == ("getRegionList", 0)


def test_counts(emulator):
    emulator.call("getRegionList")
    detail(emulator, 3135)
    detail(emulator, 1)
    emulator.call("getRegionList", secret_key="bad")
    counts = emulator.counts()
    assert counts["calls"] == {"getRegionList": 2, "getServerImageList": 0,
                               "getServerImageDetail": 2}
    assert counts["calls_by_status"] == {"getRegionList 200": 1, "getRegionList 401": 1,
                                         "getServerImageDetail 200": 1,
                                         "getServerImageDetail 400": 1}
    assert counts["auth_failures"] == 1
    assert counts["api_connections"] == 4
    assert counts["connections"] >= 4
    emulator.reset()
    assert emulator.counts() == {"calls": dict.fromkeys(ACTIONS, 0), "calls_by_status": {},
                                 "connections": 1, "api_connections": 0, "auth_failures": 0}, \
        "after a reset, only the control connection asking for counts is counted"


def test_keep_alive_counts_one_connection(emulator):
    emulator.reset()
    conn = emulator.connection()
    try:
        assert emulator.call("getRegionList", conn=conn).status == 200
        assert detail(emulator, 3135, conn=conn).status == 200
    finally:
        conn.close()
    counts = emulator.counts()
    assert counts["api_connections"] == 1
    assert sum(counts["calls"].values()) == 2
    assert len({r["conn"] for r in emulator.requests()}) == 1


def test_request_log(emulator):
    before = time.time()
    detail(emulator, 3135, "KR")
    after = time.time()
    (entry,) = emulator.requests()
    assert entry["action"] == "getServerImageDetail" and entry["status"] == 200
    assert entry["target"].startswith("/vserver/v2/getServerImageDetail?regionCode=KR&")
    assert isinstance(entry["received"], float) and isinstance(entry["answered"], float)
    assert before <= entry["received"] <= entry["answered"] <= after
    assert entry["latency"] == 0 and "retry_after" not in entry


def test_request_log_times_dropped_and_refused_calls(emulator):
    emulator.fault("reset")
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected, ssl.SSLError)):
        detail(emulator, 3135)
    emulator.call("getRegionList", secret_key="bad")
    dropped, refused = emulator.requests()
    assert (dropped["status"], refused["status"]) == (0, 401)
    for entry in (dropped, refused):
        assert entry["received"] <= entry["answered"]
    assert dropped["answered"] <= refused["received"]


# --- faults -----------------------------------------------------------------------

@pytest.mark.parametrize("kind,status,code", [("500", 500, "900"), ("503", 503, "500"),
                                              ("504", 504, "510"), ("429", 429, "420"),
                                              ("401", 401, "200"), ("403", 403, "230")])
def test_gateway_faults(emulator, kind, status, code):
    emulator.fault(kind, action="getServerImageDetail", retry_after=7)
    r = detail(emulator, 3135)
    assert r.status == status and r.json()["error"]["errorCode"] == code
    assert r.headers["Retry-After"] == ("7" if kind in ("429", "503") else None)
    assert detail(emulator, 3135).status == 200
    assert emulator.counts()["calls_by_status"]["getServerImageDetail %d" % status] == 1


def test_retry_after_defaults(emulator):
    """A 429 says Retry-After: 1 unless told otherwise; a 503 says nothing unless told."""
    emulator.fault("429")
    emulator.fault("503")
    first, second = detail(emulator, 3135), detail(emulator, 3135)
    assert (first.status, first.headers["Retry-After"]) == (429, "1")
    assert (second.status, second.headers["Retry-After"]) == (503, None)
    assert [r.get("retry_after") for r in emulator.requests()] == ["1", None]


@pytest.mark.parametrize("kind", ["429", "503"])
def test_retry_after_as_seconds(emulator, kind):
    emulator.fault(kind, retry_after=2)
    r = detail(emulator, 3135)
    assert (r.status, r.headers["Retry-After"]) == (int(kind), "2")
    assert emulator.requests()[0]["retry_after"] == "2"


@pytest.mark.parametrize("kind", ["429", "503"])
def test_retry_after_as_http_date(emulator, kind):
    """An IMF-fixdate at least retry_after seconds after the request came, at most one more."""
    emulator.fault(kind, retry_after=2, retry_after_date=True)
    r = detail(emulator, 3135)
    header = r.headers["Retry-After"]
    assert r.status == int(kind)
    assert re.fullmatch(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug"
                        r"|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT", header), header
    (entry,) = emulator.requests()
    assert entry["retry_after"] == header
    date = email.utils.parsedate_to_datetime(header).timestamp()
    assert entry["received"] + 2 <= date <= entry["answered"] + 3


def test_fault_count_action_and_match(emulator):
    emulator.fault("503", action="getServerImageDetail", count=2, match="serverImageNo=3135")
    assert emulator.call("getRegionList").status == 200
    assert detail(emulator, 100001).status == 200
    assert [detail(emulator, 3135).status for _ in range(3)] == [503, 503, 200]


def test_fault_until_cleared(emulator):
    emulator.fault("500", count=-1)
    assert [emulator.call("getRegionList").status for _ in range(3)] == [500, 500, 500]
    emulator.clear_faults()
    assert emulator.call("getRegionList").status == 200


def test_fault_malformed(emulator):
    emulator.fault("malformed")
    r = detail(emulator, 3135)
    assert r.status == 200 and r.body.startswith(b'{"getServerImageDetailResponse": {')
    with pytest.raises(ValueError):
        r.json()


def test_fault_truncated(emulator):
    emulator.fault("truncated")
    with pytest.raises(http.client.IncompleteRead):
        detail(emulator, 3135)
    assert detail(emulator, 3135).status == 200


def test_fault_nonjson(emulator):
    emulator.fault("nonjson")
    r = detail(emulator, 3135)
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")


def test_fault_xml(emulator):
    emulator.fault("xml")
    r = detail(emulator, 3135)
    assert r.status == 200 and r.headers["Content-Type"].startswith("application/xml")
    assert ET.fromstring(r.body).tag == "getServerImageDetailResponse"


def test_fault_reset(emulator):
    emulator.fault("reset")
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected, ssl.SSLError)):
        detail(emulator, 3135)
    assert detail(emulator, 3135).status == 200


def test_fault_hang_is_released_by_clear(emulator):
    emulator.fault("hang")
    conn = emulator.connection()
    conn.timeout = 0.5
    with pytest.raises((socket.timeout, TimeoutError)):
        detail(emulator, 3135, conn=conn)
    conn.close()
    assert detail(emulator, 3135).status == 200, "others are served while one hangs"
    emulator.clear_faults()
    deadline = time.monotonic() + 5
    while "getServerImageDetail 0" not in emulator.counts()["calls_by_status"]:
        assert time.monotonic() < deadline, "the hanging request was not released"
        time.sleep(0.05)


def test_hang_does_not_delay_shutdown(make_emulator):
    """SIGTERM ends the emulator with a call hanging (60 s): it exits 0 on its own (not
    SIGKILLed after emu.STOP_TIMEOUT) and the hanging call gets its connection closed,
    not a client timeout."""
    e = make_emulator()
    e.fault("hang")
    failures = []
    caller = threading.Thread(
        target=lambda: failures.append(pytest.raises(Exception, detail, e, 3135)))
    caller.start()
    deadline = time.monotonic() + 10
    while e.counts()["api_connections"] == 0:
        assert time.monotonic() < deadline, "the hanging call never reached the emulator"
        time.sleep(0.02)
    e.stop()
    caller.join(30)
    assert e.proc.returncode == 0
    assert not caller.is_alive() and len(failures) == 1, \
        "the hanging call ended without an answer"
    assert not isinstance(failures[0].value, TimeoutError), failures[0].value


def test_sigterm_exits_cleanly(make_emulator):
    e = make_emulator()
    conn = e.connection()
    e.call("getRegionList", conn=conn)
    e.stop()
    conn.close()
    assert e.proc.returncode == 0
    assert Path(e.stderr_path).read_text() == ""


@pytest.mark.emulator(latency=0.3)
def test_latency_from_the_command_line(emulator):
    emulator.call("getRegionList")
    (entry,) = emulator.requests()
    assert entry["latency"] == 0.3
    assert entry["answered"] - entry["received"] >= 0.3
