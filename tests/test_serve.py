"""The server against the real default model: the official openai client, OpenAI's error shape, the
WebSocket tree stream, Prometheus metrics, the queue bound. One server for the module."""

from __future__ import annotations

import json

import httpx
import pytest

openai = pytest.importorskip("openai")

from gorgon.config import SpecConfig  # noqa: E402
from gorgon.serve.app import BackgroundServer, ServeConfig, create_app  # noqa: E402

pytestmark = pytest.mark.slow
QUESTION = [{"role": "user", "content": "Repeat after me: the cat sat on the mat, the cat sat on the mat."}]


@pytest.fixture(scope="module")
def server(default_llm):
    config = ServeConfig(spec=SpecConfig(method="ngram"), baseline_tokens=8, default_max_tokens=16)
    app = create_app(config, llm=default_llm)
    with BackgroundServer(app) as srv:
        srv.app = app
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)


def _metric(server, name: str, **labels) -> float:
    text = httpx.get(server.url + "/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == name or head == f"{name}{{{want}}}":
            return float(value)
    return 0.0


def test_models_and_completions_streamed_equal_unstreamed(client):
    assert [m.id for m in client.models.list().data] == ["default"]

    full = client.completions.create(model="default", prompt="The capital of France is", max_tokens=12,
                                     temperature=0)  # fmt: skip
    assert full.object == "text_completion" and full.choices[0].text
    assert full.usage.completion_tokens == 12 and full.usage.prompt_tokens > 0
    assert full.usage.total_tokens == full.usage.prompt_tokens + 12
    chunks = list(client.completions.create(model="default", prompt="The capital of France is", max_tokens=12,
                                            temperature=0, stream=True))  # fmt: skip
    assert "".join(c.choices[0].text for c in chunks) == full.choices[0].text
    assert chunks[-1].choices[0].finish_reason == full.choices[0].finish_reason == "length"

    chat = client.chat.completions.create(model="default", messages=QUESTION, max_tokens=20, temperature=0)
    answer = chat.choices[0].message
    assert answer.role == "assistant" and "cat" in answer.content
    stats = chat.speculative  # Gorgon's extension field
    assert stats["method"] == "ngram" and stats["tau"] > 1.0 and stats["steps"] < 20
    assert stats["accepted_tokens"] > 0 and len(stats["acceptance_rate_per_position"]) == 4
    stream = client.chat.completions.create(model="default", messages=QUESTION, max_tokens=20, temperature=0,
                                            stream=True, stream_options={"include_usage": True})  # fmt: skip
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == answer.content
    last, usage = chunks[-2], chunks[-1]
    assert last.choices[0].finish_reason == chat.choices[0].finish_reason
    assert last.speculative["tau"] == pytest.approx(stats["tau"])
    assert not usage.choices and usage.usage.completion_tokens == chat.usage.completion_tokens


def test_raw_stream_ends_with_done(server):
    body = {"model": "default", "prompt": "Hello", "max_tokens": 4, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/completions", json=body) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    objects = [json.loads(e[6:]) for e in events[:-1]]
    assert {o["object"] for o in objects} == {"text_completion"}
    assert [o["choices"][0]["finish_reason"] for o in objects][-1] == "length"
    assert all(o["choices"][0]["finish_reason"] is None for o in objects[:-1])


LONG = "word " * 9000
BAD = [
    ({"max_tokens": 0}, 400, "max_tokens"),
    ({"max_tokens": -5}, 400, "max_tokens"),
    ({"temperature": -1}, 400, "temperature"),
    ({"top_p": 2}, 400, "top_p"),
    ({"messages": []}, 400, "messages"),
    ({"messages": [{"role": "user", "content": LONG}]}, 400, "input_tokens"),
    ({"model": "gpt-4"}, 404, "model"),
    ({"method": "telepathy"}, 400, "method"),
    ({"n": 3}, 400, "n"),
]


@pytest.mark.parametrize("change, status, param", BAD, ids=[f"{p}-{s}" for _, s, p in BAD])
def test_bad_requests_get_openai_errors(server, change, status, param):
    body = {"model": "default", "messages": QUESTION, "max_tokens": 4} | change
    r = httpx.post(server.url + "/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]
    if status == 404:
        assert error["code"] == "model_not_found"


def test_malformed_json_then_keeps_serving(server, client):
    r = httpx.post(server.url + "/v1/chat/completions", content=b'{"model": "default", "messages": [',
                   headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="default", messages=QUESTION, max_tokens=0)
    assert e.value.body["param"] == "max_tokens"
    ok = client.chat.completions.create(model="default", messages=QUESTION, max_tokens=3, temperature=0)
    assert ok.choices[0].finish_reason == "length"


def test_queue_full_is_503(server, client):
    worker = server.app.state.worker
    worker.max_queue = 0
    try:
        with pytest.raises(openai.APIStatusError) as e:
            client.chat.completions.create(model="default", messages=QUESTION, max_tokens=2)
    finally:
        worker.max_queue = 64
    assert e.value.status_code == 503 and e.value.body["code"] == "queue_full"
    assert _metric(server, "gorgon_requests_total", endpoint="chat/completions", outcome="queue_full") >= 1


def test_metrics_are_exposed_and_count(server, client):
    names = ["gorgon_requests_total", "gorgon_prompt_tokens_total", "gorgon_generation_tokens_total",
             "gorgon_request_latency_seconds_bucket", "gorgon_time_to_first_token_seconds_bucket",
             "gorgon_queue_wait_seconds_bucket", "gorgon_queue_depth", "gorgon_running_requests",
             "gorgon_plain_decode_tokens_per_second", "gorgon_spec_drafts_total", "gorgon_spec_draft_tokens_total",
             "gorgon_spec_accepted_tokens_total", "gorgon_spec_accepted_tokens_per_position_total"]  # fmt: skip
    before = _metric(server, "gorgon_generation_tokens_total")
    drafts = _metric(server, "gorgon_spec_draft_tokens_total", method="ngram")
    out = client.chat.completions.create(model="default", messages=QUESTION, max_tokens=12, temperature=0)
    text = httpx.get(server.url + "/metrics").text
    for name in names:
        assert name in text, name
    assert _metric(server, "gorgon_generation_tokens_total") == before + out.usage.completion_tokens
    assert _metric(server, "gorgon_spec_draft_tokens_total", method="ngram") > drafts
    assert _metric(server, "gorgon_spec_accepted_tokens_per_position_total", method="ngram", position="0") > 0
    assert _metric(server, "gorgon_plain_decode_tokens_per_second") > 0


def _ws_generate(server, request: dict) -> list[dict]:
    from websockets.sync.client import connect

    with connect(server.url.replace("http", "ws") + "/v1/generate_stream") as ws:
        ws.send(json.dumps(request))
        return [json.loads(m) for m in ws]


@pytest.mark.parametrize("method", ["ngram", "eagle"])
def test_websocket_streams_trees(server, client, method):
    messages = _ws_generate(
        server, {"messages": QUESTION, "max_tokens": 16, "temperature": 0, "method": method}
    )
    steps, done = messages[:-1], messages[-1]
    assert done["type"] == "done" and done["speculative"]["method"] == method
    plain = client.chat.completions.create(model="default", messages=QUESTION, max_tokens=16, temperature=0,
                                           extra_body={"method": "plain"})  # fmt: skip
    assert "".join(m["text"] for m in steps) == done["text"] == plain.choices[0].message.content
    trees = [m["tree_debug"] for m in steps if m["tree_debug"]["kind"] == "tree"]
    assert trees and all(t["method"] == method for t in trees)
    for t in trees:
        ids = {n["id"] for n in t["nodes"]}
        assert t["nodes"][0]["parent"] == -1 and t["nodes"][0]["depth"] == 0
        for n in t["nodes"][1:]:
            assert n["parent"] in ids and isinstance(n["token"], str) and n["depth"] >= 1
        assert t["accepted"][0] == 0 and t["nodes"][-1]["bonus"] and t["accepted"][-1] == t["nodes"][-1]["id"]
    # accepted drafts plus the bonus token are what each step emitted (the last step may be cut short)
    for m in steps[1:-1]:
        assert len(m["tree_debug"]["accepted"]) - 1 == len(m["token_ids"])
    assert any(len(t["accepted"]) > 2 for t in trees)  # a draft was accepted
    if method == "eagle":  # 48-node trees: most of each is rejected
        assert all(any(not n["accepted"] for n in t["nodes"]) for t in trees)
    last = steps[-1]["tree_debug"]
    assert last["tokens_per_s"] > 0 and last["speedup"] > 0


def test_websocket_rejects_bad_request(server):
    (message,) = _ws_generate(server, {"prompt": "Hi", "max_tokens": 0})
    assert message["type"] == "error" and message["error"]["param"] == "max_tokens"


def test_page_and_info(server):
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and '<script type="module" src="/static/app.js">' in page.text
    assert httpx.get(server.url + "/static/app.js").status_code == 200
    info = httpx.get(server.url + "/info").json()
    assert info["default_method"] == "ngram" and {"plain", "ngram", "medusa", "eagle"} <= set(info["methods"])
    assert info["plain_tokens_per_s"] > 0


def test_cli_serve_rejects_bad_options(capsys):
    from gorgon.cli import main

    assert main(["serve", "--max-queue", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("gorgon: error:") and "--max-queue" in err[0]


def test_gorgon_serve_command(tmp_path):
    """The real command in a subprocess: EAGLE with a CPU-sized tree, answering the openai client."""
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "gorgon", "serve", "--model", "default", "--method", "eagle", "--host", "127.0.0.1",
           "--port", str(port), "--eagle-top-k", "4", "--eagle-depth", "4", "--eagle-total-tokens", "8",
           "--lookup", "3", "--baseline-tokens", "0", "--device", "cpu"]  # fmt: skip
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "gorgon serve did not come up"
            try:
                if httpx.get(url + "/v1/models").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        out = client.chat.completions.create(model="default", messages=QUESTION, max_tokens=8, temperature=0)
        assert out.speculative["method"] == "eagle" and out.usage.completion_tokens == 8
    finally:
        proc.terminate()
        proc.wait(timeout=30)
