"""`udaci serve` through the clients a CMS uses (issue #24): the official
`openai` Python client on /v1/chat/completions, /v1/completions and
/v1/models, httpx on /v1/headlines (one article, a list, JSON Lines), curl-like
requests for /health, /metrics and the editor's page. Needs the default model."""
import json
import subprocess

import httpx
import openai
import pytest

from server_util import UDACI, Server

SUMMARIES = [
    "The city council voted on Tuesday to ban cars from the downtown core starting next year, citing pollution and safety.",
    "Scientists have found signs of liquid water beneath the south pole of Mars, raising hopes of finding life.",
    "The stock market fell sharply on Monday after a weak jobs report rattled investors.",
]


@pytest.fixture(scope="module")
def server():
    # Batch-invariant: a headline does not depend on what else is in the batch,
    # so every response can be compared with the library's headline alone.
    s = Server("--scheduler-opt", "batch_invariant=1")
    yield s
    assert s.stop() == 0, "".join(s.stderr_lines[-20:])


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)


def library_headline(summary):
    """The headline the library writes alone (the CLI, same default engine)."""
    out = subprocess.run([UDACI, "--threads", "2", "headline", summary], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_health_metrics_page(server):
    r = httpx.get(server.url + "/health")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    assert len(r.headers["x-request-id"]) == 16
    r = httpx.get(server.url + "/health", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<textarea" in page.text and "/v1/headlines" in page.text
    assert "http://" not in page.text and "https://" not in page.text  # no external assets
    m = httpx.get(server.url + "/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    for name in ("udaci_requests_total", "udaci_queue_depth", "udaci_live_sequences",
                 "udaci_time_to_first_token_seconds_bucket", "udaci_request_duration_seconds_count",
                 "udaci_generated_tokens_total", "udaci_kv_cache_bytes", "udaci_client_disconnects_total",
                 "udaci_rejected_requests_total"):
        assert name in m.text, name
    assert 'udaci_requests_total{endpoint="/health",status="200"}' in m.text


def test_models(client):
    models = client.models.list()
    assert len(models.data) == 1
    assert models.data[0].id.endswith(".gguf")


def test_chat_completion_stream_equals_non_stream(client):
    model = client.models.list().data[0].id
    msgs = [{"role": "user", "content": "Write one headline about a new bridge opening in the city."}]
    r = client.chat.completions.create(model=model, messages=msgs, max_tokens=12, temperature=0)
    text = r.choices[0].message.content
    assert r.choices[0].message.role == "assistant"
    assert text and r.choices[0].finish_reason in ("stop", "length")
    assert 1 <= r.usage.completion_tokens <= 12 and r.usage.prompt_tokens > 5
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    pieces, finish, usage = [], None, None
    for chunk in client.chat.completions.create(model=model, messages=msgs, max_tokens=12, temperature=0,
                                                stream=True, stream_options={"include_usage": True}):
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.content:
                pieces.append(ch.delta.content)
            finish = ch.finish_reason or finish
    assert "".join(pieces) == text  # greedy: the same tokens, streamed
    assert finish == r.choices[0].finish_reason
    assert usage.completion_tokens == r.usage.completion_tokens


def test_completions_stop_and_seed(client):
    model = client.models.list().data[0].id
    r = client.completions.create(model=model, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0)
    full = r.choices[0].text
    assert r.choices[0].finish_reason == "length" and "5" in full
    streamed = "".join(c.choices[0].text for c in client.completions.create(
        model=model, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0, stream=True) if c.choices)
    assert streamed == full
    s = client.completions.create(model=model, prompt="1, 2, 3, 4,", max_tokens=12, temperature=0, stop=["7"])
    assert s.choices[0].finish_reason == "stop"
    assert "7" not in s.choices[0].text and full.startswith(s.choices[0].text)
    a = client.completions.create(model=model, prompt="Once upon a time", max_tokens=10, temperature=0.9, seed=7)
    b = client.completions.create(model=model, prompt="Once upon a time", max_tokens=10, temperature=0.9, seed=7)
    assert a.choices[0].text == b.choices[0].text


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert "is not served here" in str(e.value)


def test_headline_single_equals_the_library(server):
    r = httpx.post(server.url + "/v1/headlines", json={"id": "x1", "summary": SUMMARIES[0]}, timeout=120)
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert len(res) == 1 and res[0]["id"] == "x1"
    assert res[0]["headline"] == library_headline(SUMMARIES[0])
    assert res[0]["finish_reason"] in ("stop", "length", "repetition") and res[0]["completion_tokens"] >= 1
    assert res[0]["latency_ms"] > 0 and res[0]["prompt_tokens"] > 10
    assert res[0]["drafted_tokens"] == 0 and res[0]["accepted_tokens"] == 0  # greedy drafts nothing


def test_headline_list_and_json_lines(server):
    arts = [{"id": f"a{i}", "summary": s} for i, s in enumerate(SUMMARIES)]
    r = httpx.post(server.url + "/v1/headlines", json={"articles": arts}, timeout=120)
    assert r.status_code == 200, r.text
    listed = r.json()["results"]
    assert [x["id"] for x in listed] == ["a0", "a1", "a2"]
    body = "\n".join(json.dumps(a) for a in arts) + "\n"
    lines = []
    with httpx.stream("POST", server.url + "/v1/headlines", content=body,
                      headers={"Content-Type": "application/x-ndjson"}, timeout=120) as s:
        assert s.status_code == 200
        assert s.headers["content-type"] == "application/x-ndjson"
        for line in s.iter_lines():
            if line.strip():
                lines.append(json.loads(line))
    assert sorted(x["id"] for x in lines) == ["a0", "a1", "a2"]
    by_id = {x["id"]: x["headline"] for x in listed}
    for x in lines:
        assert x["headline"] == by_id[x["id"]]
        assert x["finish_reason"] in ("stop", "length", "repetition")
    assert by_id["a2"] == library_headline(SUMMARIES[2])


def test_headline_streamed_as_server_sent_events(server):
    events = []
    with httpx.stream("POST", server.url + "/v1/headlines", json={"id": "s1", "summary": SUMMARIES[0], "stream": True},
                      timeout=120) as s:
        assert s.status_code == 200 and s.headers["content-type"] == "text/event-stream"
        for line in s.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    parsed = [json.loads(e) for e in events[:-1]]
    deltas = [e["delta"] for e in parsed if "delta" in e]
    final = [e for e in parsed if e.get("done")]
    assert len(final) == 1 and final[0]["id"] == "s1"
    assert len(deltas) >= 2  # the text arrived in pieces, before the end
    assert final[0]["headline"] == library_headline(SUMMARIES[0])
    raw = "".join(deltas)  # the generated text; the headline is its cleaned first line
    assert all(word in raw for word in final[0]["headline"].split())


def test_headline_candidates(server):
    r = httpx.post(server.url + "/v1/headlines",
                   json={"summary": SUMMARIES[1], "n": 3, "temperature": 0.9, "seed": 1}, timeout=120)
    assert r.status_code == 200, r.text
    res = r.json()["results"][0]
    assert len(res["candidates"]) == 3 and res["headline"] == res["candidates"][0]["headline"]
    assert all(c["headline"] for c in res["candidates"])
    r2 = httpx.post(server.url + "/v1/headlines",
                    json={"summary": SUMMARIES[1], "n": 3, "temperature": 0.9, "seed": 1}, timeout=120)
    assert [c["headline"] for c in r2.json()["results"][0]["candidates"]] == [c["headline"] for c in res["candidates"]]


def test_access_log_has_a_line_per_request(server):
    httpx.get(server.url + "/health", headers={"X-Request-Id": "log-check-1"})
    import time
    time.sleep(0.2)
    lines = [x for x in server.access_log() if x.get("request_id") == "log-check-1"]
    assert len(lines) == 1
    assert lines[0]["path"] == "/health" and lines[0]["status"] == 200 and lines[0]["method"] == "GET"


def test_headline_beam_n_best():
    """A server whose recipe is beam search: a greedy request for n <= n_best
    candidates gets the beam's n best (best first, scores not increasing),
    the first equal to the library's beam headline; n over n_best is 400."""
    flags = ["--decoder", "beam", "--decoder-opt", "width=4", "--decoder-opt", "n_best=3"]
    s = Server(*flags)
    try:
        r = httpx.post(s.url + "/v1/headlines", json={"summary": SUMMARIES[2], "n": 3}, timeout=300)
        assert r.status_code == 200, r.text
        res = r.json()["results"][0]
        cands = res["candidates"]
        assert len(cands) == 3 and res["headline"] == cands[0]["headline"]
        scores = [c["score"] for c in cands]
        assert scores == sorted(scores, reverse=True), scores
        assert all(c["headline"] and c["completion_tokens"] >= 1 for c in cands)
        out = subprocess.run([UDACI, "--threads", "2", "headline", *flags, SUMMARIES[2]], capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert cands[0]["headline"] == out.stdout.strip()
        r2 = httpx.post(s.url + "/v1/headlines", json={"summary": SUMMARIES[2], "n": 2}, timeout=300)
        assert [c["headline"] for c in r2.json()["results"][0]["candidates"]] == [c["headline"] for c in cands[:2]]
        r4 = httpx.post(s.url + "/v1/headlines", json={"summary": SUMMARIES[2], "n": 4}, timeout=60)
        assert r4.status_code == 400 and "keeps 3 best" in r4.json()["error"]["message"], r4.text
    finally:
        assert s.stop() == 0, "".join(s.stderr_lines[-20:])


def test_greedy_candidates_without_beam_are_refused(server):
    r = httpx.post(server.url + "/v1/headlines", json={"summary": SUMMARIES[0], "n": 2}, timeout=60)
    assert r.status_code == 400
    msg = r.json()["error"]["message"]
    assert "temperature" in msg and "beam" in msg
