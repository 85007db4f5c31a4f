"""The server under load: 32 concurrent streaming clients, each answered as if alone; a request that
arrives during a long answer joins the running batch; a client that disconnects mid-stream (or while
queued) frees its place at once."""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

openai = pytest.importorskip("openai")

from gorgon.config import SpecConfig  # noqa: E402
from gorgon.serve.app import BackgroundServer, ServeConfig, create_app  # noqa: E402

pytestmark = pytest.mark.slow
TOPICS = ["the sea", "a cat", "Paris", "rain", "coffee", "the moon", "a library", "bicycles"]


@pytest.fixture(scope="module")
def server(default_llm):
    config = ServeConfig(spec=SpecConfig(method="ngram"), max_batch=8, max_queue=64, baseline_tokens=0)
    app = create_app(config, llm=default_llm)
    with BackgroundServer(app) as srv:
        srv.app = app
        yield srv


def _metric(server, name: str, labels: str = "") -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        head, _, value = line.rpartition(" ")
        if head == name + labels:
            return float(value)
    return 0.0


def _messages(topic: str) -> list[dict]:
    return [{"role": "user", "content": f"Write one sentence about {topic}."}]


async def _stream(client, topic: str) -> str:
    stream = await client.chat.completions.create(model="default", messages=_messages(topic), max_tokens=10,
                                                  temperature=0, stream=True)  # fmt: skip
    parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    return "".join(parts)


def test_32_concurrent_streams_equal_alone(server):
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
    alone = {}
    for t in TOPICS:
        out = client.chat.completions.create(
            model="default", messages=_messages(t), max_tokens=10, temperature=0
        )
        alone[t] = out.choices[0].message.content
    finished = _metric(server, "gorgon_requests_total", '{endpoint="chat/completions",outcome="length"}')

    async def main() -> list[str]:
        aclient = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=120)
        topics = TOPICS * 4
        return topics, await asyncio.gather(*(_stream(aclient, t) for t in topics))

    start = time.perf_counter()
    topics, texts = asyncio.run(main())
    assert time.perf_counter() - start < 120
    assert len(texts) == 32
    for t, text in zip(topics, texts):
        assert text == alone[t], t
    ran = _metric(server, "gorgon_requests_total", '{endpoint="chat/completions",outcome="length"}')
    stopped = _metric(server, "gorgon_requests_total", '{endpoint="chat/completions",outcome="stop"}')
    assert ran + stopped >= finished + 32
    assert _metric(server, "gorgon_queue_depth") == 0


def _cancelled(server) -> float:
    return _metric(server, "gorgon_requests_total", '{endpoint="chat/completions",outcome="cancelled"}')


def _wait_for(condition, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_disconnect_mid_stream_frees_the_slot(server):
    before = _cancelled(server)
    tokens = _metric(server, "gorgon_generation_tokens_total")
    body = {"model": "default", "messages": _messages("the sea"), "max_tokens": 2000, "ignore_eos": True,
            "temperature": 0, "stream": True}  # fmt: skip
    with (
        httpx.Client(timeout=30) as http,
        http.stream("POST", server.url + "/v1/chat/completions", json=body) as r,
    ):
        chunks = 0
        for line in r.iter_lines():
            chunks += line.startswith("data: ")
            if chunks == 4:
                break  # leaving the block closes the connection mid-stream
    assert _wait_for(lambda: _cancelled(server) == before + 1)
    assert _metric(server, "gorgon_running_requests") == 0
    generated = _metric(server, "gorgon_generation_tokens_total") - tokens
    assert 3 <= generated < 200  # it stopped, long before its 2000 tokens
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=30)
    out = client.chat.completions.create(
        model="default", messages=_messages("rain"), max_tokens=4, temperature=0
    )
    assert out.usage.completion_tokens == 4


def test_disconnect_while_queued_leaves_the_queue(server):
    before = _cancelled(server)
    long = {"model": "default", "messages": _messages("the moon"), "max_tokens": 2000, "ignore_eos": True,
            "temperature": 0, "stream": True, "method": "plain"}  # fmt: skip
    queued = long | {"method": "ngram", "max_tokens": 5}  # another method: waits for the next batch
    with (
        httpx.Client(timeout=30) as http,
        http.stream("POST", server.url + "/v1/chat/completions", json=long) as r,
    ):
        lines = r.iter_lines()
        next(lines)
        with http.stream("POST", server.url + "/v1/chat/completions", json=queued) as waiting:
            assert _wait_for(lambda: _metric(server, "gorgon_queue_depth") == 1)
            next(waiting.iter_lines())  # the role chunk comes at once; the tokens would come later
        assert _wait_for(lambda: _metric(server, "gorgon_queue_depth") == 0)
        assert _wait_for(lambda: _cancelled(server) == before + 1)
        assert _metric(server, "gorgon_running_requests") == 1  # the long one is still running
    assert _wait_for(lambda: _cancelled(server) == before + 2)
    assert _wait_for(lambda: _metric(server, "gorgon_running_requests") == 0)


def test_a_short_request_joins_a_running_long_one(server):
    """Continuous batching: a request arriving while a long answer is generated is answered at once,
    not after the long one ends."""
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0)
    long_done, short_done = {}, {}

    def long_request():
        client.completions.create(model="default", prompt="Count: 1, 2, 3,", max_tokens=400, temperature=0,
                                  extra_body={"ignore_eos": True})  # fmt: skip
        long_done["t"] = time.perf_counter()

    worker = threading.Thread(target=long_request)
    worker.start()
    assert _wait_for(lambda: _metric(server, "gorgon_running_requests") >= 1)
    out = client.completions.create(model="default", prompt="Hello", max_tokens=4, temperature=0)
    short_done["t"] = time.perf_counter()
    worker.join(timeout=120)
    assert out.choices[0].text
    assert short_done["t"] < long_done["t"]
