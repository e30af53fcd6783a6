"""`udaci serve` starting and stopping (issue #24): SIGTERM drains — the
request in flight finishes, /health and new requests answer 503, the process
exits 0; bad flags are refused before anything loads. Needs the default model."""
import json
import socket
import subprocess
import threading
import time

import httpx

from server_util import UDACI, Server


def test_sigterm_drains():
    server = Server()
    body = json.dumps({"prompt": "1, 2, 3, 4, 5,", "max_tokens": 60, "temperature": 0, "stream": True}).encode()
    s = socket.create_connection((server.host, server.port), timeout=60)
    s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " +
              str(len(body)).encode() + b"\r\n\r\n" + body)
    got = [s.recv(4096)]
    assert got[0].startswith(b"HTTP/1.1 200")
    reader = threading.Thread(target=lambda: [got.append(c) for c in iter(lambda: s.recv(65536), b"")])
    reader.start()
    server.proc.send_signal(15)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            if httpx.get(server.url + "/health", timeout=5).status_code == 503:
                break
        except httpx.TransportError:
            break
        time.sleep(0.05)
    h = httpx.get(server.url + "/health", timeout=5)
    assert h.status_code == 503 and h.json()["status"] == "draining"
    r = httpx.post(server.url + "/v1/headlines", json={"summary": "A new bridge opened."}, timeout=10)
    assert r.status_code == 503 and r.json()["error"]["code"] == "draining"
    reader.join(timeout=60)
    s.close()
    stream = b"".join(got)
    assert b"data: [DONE]" in stream  # the request in flight ran to its end
    assert b"\"finish_reason\":\"length\"" in stream or b"\"finish_reason\":\"stop\"" in stream
    assert server.proc.wait(timeout=60) == 0


def test_bad_flags_are_refused():
    for args, fragment in [(["--port", "70000"], "port"), (["--max-queue", "0"], "max-queue"),
                           (["--api-key-file", "/nonexistent/keys"], "api-key-file"),
                           (["--recipe", "kv-cache+bogus"], "bogus")]:
        out = subprocess.run([UDACI, "serve", *args], capture_output=True, text=True, timeout=60)
        assert out.returncode != 0 and fragment in out.stderr, (args, out.stderr)


def test_a_config_udaci_tune_wrote_serves_unchanged():
    # tests/fixtures/tune/tuned.json: what `udaci tune --scenario edge` chose (issue #26).
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", "tune", "tuned.json")
    server = Server("--config", path)
    try:
        r = httpx.post(server.url + "/v1/headlines", json={"summary": "The city council approved a plan on "
                                                                      "Tuesday to plant 10,000 trees by 2030."},
                       timeout=120)
        assert r.status_code == 200, r.text
        assert r.json()["results"][0]["headline"].strip()
    finally:
        server.stop()


def test_the_config_sets_the_repetition_stop_of_requests_without_one(tmp_path):
    # "generation": {"repetition_stop": 0} in the config: a request that does
    # not name a stop is not cut; one that asks for 8 is.
    cfg = tmp_path / "no-stop.json"
    cfg.write_text(json.dumps({"schema": "udaci-config/1", "recipe": "no-quant+greedy",
                               "generation": {"repetition_stop": 0}}), encoding="utf-8")
    looping = ("Despite entering false information, their work wasn't redone fully and in some cases the "
               "census takers received bonuses, the Office of Inspector General reported.")
    server = Server("--config", str(cfg))
    try:
        def ask(**extra):
            r = httpx.post(server.url + "/v1/headlines", json={"summary": looping, **extra}, timeout=120)
            assert r.status_code == 200, r.text
            return r.json()["results"][0]
        unset, eight = ask(), ask(repetition_stop=8)
        assert unset["finish_reason"] != "repetition"
        assert eight["finish_reason"] == "repetition"
    finally:
        server.stop()
