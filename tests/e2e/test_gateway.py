"""The gateway and the services' own ports on the real stack (issue #12 items 6 and 10): forwarded
addresses are trusted only from the gateway, answers carry one Date header, Open311's XML clients get
XML errors, and a chunked body sent straight to a service is read (bounded), never taken as empty."""
import http.client
import json
import secrets
import time

from minqing.http import MAX_BODY_BYTES


def _send(port: int, method: str, path: str, body: bytes | None = None, headers=None, chunked: bool = False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path)
        for key, value in (headers or {}).items():
            conn.putheader(key, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        elif body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        if body is not None:
            try:
                if chunked:
                    for i in range(0, len(body), 4096):
                        piece = body[i:i + 4096]
                        conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
                    conn.send(b"0\r\n\r\n")
                else:
                    conn.send(body)
            except OSError:
                pass                        # the server may stop reading early
        resp = conn.getresponse()
        return resp.status, resp.msg, resp.read()
    finally:
        conn.close()


def test_a_client_on_a_service_port_cannot_pick_its_own_address(stack):
    """Straight to intake's port, a fresh X-Forwarded-For on every request used to give every request a
    fresh rate-limit bucket; now the peer's address counts, so the limit (burst 30) bites."""
    intake = stack.http_port + 1
    statuses = []
    for i in range(45):
        status, _, _ = _send(intake, "GET", f"/api/v1/track/LJ-NOPE-{secrets.token_hex(4)}?pin=000000",
                             headers={"X-Forwarded-For": f"203.0.113.{i}",
                                      "X-Minqing-Gateway": "a guess"})
        statuses.append(status)
    assert 429 in statuses, statuses
    time.sleep(7)       # let the bucket of 127.0.0.1 refill for the tests that follow


def test_the_gateway_replaces_a_forged_proof(stack):
    """Through the gateway, the client's own X-Forwarded-For and proof are dropped: the key is its
    real address, whatever it claims (the limit bites the same way)."""
    statuses = []
    for i in range(45):
        status, _, _ = _send(stack.http_port, "GET", f"/api/v1/track/LJ-NOPE-{secrets.token_hex(4)}?pin=000000",
                             headers={"X-Forwarded-For": f"198.51.100.{i}", "X-Minqing-Gateway": "forged"})
        statuses.append(status)
    assert 429 in statuses, statuses
    time.sleep(7)


def test_a_proxied_answer_has_one_date_header(stack):
    status, headers, _ = _send(stack.http_port, "GET", "/api/v1/counties/longjiang")
    assert status == 200
    assert len(headers.get_all("Date")) == 1, headers.get_all("Date")
    assert len(headers.get_all("Server") or []) <= 1


def test_open311_xml_gets_xml_errors_from_the_gateway(stack):
    status, headers, body = _send(stack.http_port, "DELETE", "/open311/v2/services.xml")
    assert status == 405
    assert headers["Content-Type"].startswith("text/xml"), headers["Content-Type"]
    assert b"<errors><error><code>405</code>" in body, body
    status, headers, body = _send(stack.http_port, "DELETE", "/open311/v2/services.json")
    assert status == 405 and headers["Content-Type"].startswith("application/json")


REPORT = {"county": "longjiang", "channel": "hotline", "category": "202", "summary": "分块发送的诉求",
          "location": {"township": "山泉镇", "village": "平安村"}, "reporter": {"name": "钱七", "phone": "13600002222"}}


def test_a_chunked_body_straight_to_a_service_is_read(stack):
    body = json.dumps(REPORT, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {stack.tokens['operator']}"}
    status, _, answer = _send(stack.http_port + 1, "POST", "/api/v1/cases", body, headers, chunked=True)
    assert status == 201, answer
    case_id = json.loads(answer)["case_id"]
    assert stack.request("GET", f"/api/v1/cases/{case_id}")[0] == 200


def test_a_chunked_body_straight_to_a_service_is_bounded(stack):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {stack.tokens['operator']}"}
    body = b'{"summary": "' + b"x" * (MAX_BODY_BYTES + 10) + b'"}'
    status, _, answer = _send(stack.http_port + 1, "POST", "/api/v1/cases", body, headers, chunked=True)
    assert status == 413, answer
