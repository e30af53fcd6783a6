"""`udaci serve` under bad and hostile input (issue #24): API keys, size caps,
malformed HTTP and JSON, invalid UTF-8, unknown fields, slow and vanishing
clients, a full queue. Each answer is a clean 4xx with an OpenAI-style JSON
error, and the server keeps serving. Needs the default model."""
import json
import os
import socket
import tempfile
import threading
import time

import httpx
import pytest

from server_util import Server, status_of

KEY = "sk-test-" + "7" * 24
SUMMARY = "The city council voted on Tuesday to ban cars from the downtown core starting next year."


@pytest.fixture(scope="module")
def server():
    with tempfile.NamedTemporaryFile("w", suffix=".keys", delete=False) as f:
        f.write("# keys of this test\n" + KEY + "\n\nsk-other-key\n")
        keys = f.name
    s = Server("--api-key-file", keys, "--max-body-bytes", "4096", "--max-articles", "2", "--max-queue", "1",
               "--timeout-s", "60")
    yield s
    assert s.stop() == 0
    os.unlink(keys)


AUTH = {"Authorization": "Bearer " + KEY}


def post(server, path, body=None, headers=None, content=None):
    h = dict(AUTH)
    h.update(headers or {})
    return httpx.post(server.url + path, json=body, content=content, headers=h, timeout=120)


def assert_error(r, status, code=None):
    assert r.status_code == status, r.text
    e = r.json()["error"]
    assert e["message"] and e["type"]
    if code:
        assert e["code"] == code


def test_api_keys(server):
    r = httpx.post(server.url + "/v1/headlines", json={"summary": SUMMARY})
    assert_error(r, 401, "invalid_api_key")
    assert r.headers["www-authenticate"] == "Bearer"
    assert_error(httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer " + KEY[:-1] + "8"}), 401)
    assert_error(httpx.get(server.url + "/v1/models", headers={"Authorization": KEY}), 401)
    assert httpx.get(server.url + "/v1/models", headers=AUTH).status_code == 200
    assert httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer sk-other-key"}).status_code == 200
    assert httpx.get(server.url + "/health").status_code == 200  # health needs no key
    assert server.metric('udaci_rejected_requests_total{reason="unauthorized"}') >= 3


def test_size_caps(server):
    assert_error(post(server, "/v1/headlines", {"summary": "x" * 5000}), 413)
    arts = [{"id": str(i), "summary": SUMMARY} for i in range(3)]
    assert_error(post(server, "/v1/headlines", {"articles": arts}), 413, "too_many_articles")
    assert_error(post(server, "/v1/headlines", {"summary": SUMMARY, "n": 3, "temperature": 1}), 413)
    long_prompt = " ".join(["word"] * 700)  # under the body cap, over no token cap: still served
    r = post(server, "/v1/completions", {"prompt": long_prompt[:3000], "max_tokens": 1})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("body,fragment", [
    (b'{"summary": ', "not valid JSON"),
    (b'[1, 2]', "must be a JSON object"),
    (b'{"summary": "' + b"\xff\xfe" + b'"}', "not valid JSON"),
    (b'{"summary": "ok", "colour": 1}', "unknown field 'body.colour'"),
    (b'{"summary": ""}', "empty"),
    (b'{"summary": 5}', "must be a string"),
    (b'{"summary": "ok", "max_new_tokens": "many"}', "must be an integer"),
    (b'{"summary": "ok", "max_new_tokens": 100000}', "between"),
    (b'{"summary": "ok", "repetition_stop": -1}', "between"),
    (b'{"summary": "ok", "n": 2}', "temperature"),
    (b'{"articles": [{"id": "1", "summary": "a", "x": 1}]}', "unknown field"),
    (b'{"summary": "ok", "articles": []}', "either"),
    (b'', "empty"),
])
def test_bad_headline_requests(server, body, fragment):
    r = post(server, "/v1/headlines", content=body, headers={"Content-Type": "application/json"})
    assert_error(r, 400)
    assert fragment in r.json()["error"]["message"]


def test_bad_json_lines(server):
    r = post(server, "/v1/headlines", content=b'{"summary": "ok"}\n{not json\n',
             headers={"Content-Type": "application/x-ndjson"})
    assert_error(r, 400)
    assert "line 2" in r.json()["error"]["message"]


@pytest.mark.parametrize("body,fragment", [
    ({"messages": []}, "non-empty array"),
    ({"messages": [{"role": "user"}]}, "content"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, "between"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 9}, "between"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": [1]}, "stop"),
    ({"messages": [{"role": "user", "content": "hi"}], "logit_bias": {}}, "unknown field"),
])
def test_bad_chat_requests(server, body, fragment):
    r = post(server, "/v1/chat/completions", body)
    assert_error(r, 400)
    assert fragment in r.json()["error"]["message"]


def test_routes_and_methods(server):
    assert_error(httpx.get(server.url + "/nope"), 404)
    r = httpx.get(server.url + "/v1/headlines", headers=AUTH)
    assert_error(r, 405)
    assert r.headers["allow"] == "POST"


def test_malformed_http(server):
    assert status_of(server.raw(b"GARBAGE\r\n\r\n")) == 400
    assert status_of(server.raw(b"GET / HTTP/9.9\r\nHost: x\r\n\r\n")) in (400, 505)
    assert status_of(server.raw(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")) == 431
    assert status_of(server.raw(b"POST /v1/headlines HTTP/1.1\r\nHost: x\r\nContent-Length: 99999\r\n\r\n")) == 413
    assert status_of(server.raw(b"POST /v1/headlines HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")) == 400
    # A body cut short: the client goes away; the server drops the connection.
    server.raw(b"POST /v1/headlines HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"summ", close_after_send=True)
    # A slow client: the request line and headers one byte at a time.
    req = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    resp = server.raw(req, delay=0.01)
    assert status_of(resp) == 200 and b'"ok"' in resp
    assert httpx.get(server.url + "/health").status_code == 200


def leave_mid_request(server, body, stream):
    """One client leaves while its request runs; returns whether the server
    counted the disconnect. Either way the request must end and free its
    place (live sequences, requests in flight and the queue back to 0)."""
    before = server.metric("udaci_client_disconnects_total")
    client = server.open_stream("/v1/completions", body, AUTH, read_first=stream)
    assert client.status_line == ("HTTP/1.1 200 OK" if stream else "sent")
    deadline = time.time() + 10
    while time.time() < deadline and server.metric("udaci_live_sequences") == 0:
        time.sleep(0.02)
    refused = None
    if stream and server.metric("udaci_in_flight_requests") == 1:
        # The only place is taken: another request is refused.
        r = post(server, "/v1/headlines", {"summary": SUMMARY})
        refused = r.status_code == 429
        if refused:
            assert_error(r, 429, "queue_full")
            assert r.headers["retry-after"] == "1"
        else:  # the long request ended first (it may stop at an end token)
            assert r.status_code == 200, r.text
    client.leave()
    deadline = time.time() + 30
    while time.time() < deadline:
        if server.metric("udaci_in_flight_requests") == 0 and server.metric("udaci_live_sequences") == 0:
            break
        time.sleep(0.05)
    assert server.metric("udaci_in_flight_requests") == 0
    assert server.metric("udaci_live_sequences") == 0
    assert server.metric("udaci_queue_depth") == 0
    counted = server.metric("udaci_client_disconnects_total") == before + 1
    return counted and refused is not False


# A client that leaves is noticed within a token or two. (Until session 14
# about one run in fifteen of these tests saw the departure "missed": the
# /metrics read that waits for the request to start was itself held up for
# the whole generation, because the scheduler retook its step lock after
# every step and starved the metrics thread's cache read; by the time the
# test saw the request live, it had ended. The scheduler now lets such
# readers in between steps, and each scenario gets one try.)
def test_queue_full_is_429_and_disconnect_frees_the_slot(server):
    body = {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 400, "temperature": 0, "stream": True}
    assert leave_mid_request(server, body, stream=True)
    r = post(server, "/v1/headlines", {"summary": SUMMARY})  # the place is free again
    assert r.status_code == 200, r.text


def test_non_streaming_disconnect_cancels(server):
    before = server.metric('udaci_requests_total{endpoint="/v1/completions",status="499"}') \
        if _has_metric(server, 'udaci_requests_total{endpoint="/v1/completions",status="499"}') else 0
    logged = len([e for e in server.access_log() if e.get("path") == "/v1/completions"])
    body = {"prompt": "1, 2, 3, 4, 5,", "max_tokens": 400, "temperature": 0}
    assert leave_mid_request(server, body, stream=False)
    # Logged and counted as 499 (client closed request), not as a server error
    # (the line is written as the request's thread ends: wait for it).
    deadline = time.time() + 10
    while time.time() < deadline:
        entries = [e for e in server.access_log() if e.get("path") == "/v1/completions"]
        if len(entries) > logged:
            break
        time.sleep(0.05)
    entry = entries[-1]
    assert entry["status"] == 499 and entry["note"] == "client disconnected", entry
    assert server.metric('udaci_requests_total{endpoint="/v1/completions",status="499"}') == before + 1


def _has_metric(server, name):
    try:
        server.metric(name)
        return True
    except KeyError:
        return False


def test_still_serving(server):
    r = post(server, "/v1/headlines", {"summary": SUMMARY})
    assert r.status_code == 200 and r.json()["results"][0]["headline"]
