"""The HTTP server: OpenAI's API, the WebSocket tree stream, Prometheus metrics and the page.

Routes (FastAPI on uvicorn):
  GET  /                      the page (static/), which streams through /v1/generate_stream
  GET  /info                  the model, the methods offered, the plain-decoding speed measured at start
  GET  /v1/models             the one model served
  POST /v1/completions        OpenAI completions; `stream: true` for server-sent events
  POST /v1/chat/completions   OpenAI chat completions, likewise
  WS   /v1/generate_stream    per step: the new text and `tree_debug` (the candidate tree, accepted nodes,
                              tokens/s and the speedup over plain decoding so far)
  GET  /metrics               Prometheus (names in metrics.py and the README)
"""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from gorgon.config import SpecConfig
from gorgon.engine import Request as EngineRequest
from gorgon.engine import RequestOutput, TokenEvent
from gorgon.errors import GorgonError
from gorgon.llm import LLM
from gorgon.serve import protocol
from gorgon.serve.methods import Methods
from gorgon.serve.metrics import Metrics
from gorgon.serve.protocol import ChatCompletionRequest, CompletionRequest, StreamRequest, error_body
from gorgon.serve.tree_view import TreeView
from gorgon.serve.worker import Job, QueueFull, Worker

STATIC = Path(__file__).parent / "static"


@dataclass
class ServeConfig:
    """How to serve: the model and the default method (None: plain), the queue bound, the batch size,
    tokens of plain decoding timed at start for the speedup (0: not measured), max_tokens when a
    request gives none."""

    model: str = "default"
    device: str = "auto"
    dtype: str = "auto"
    spec: SpecConfig | None = None
    served_model_name: str | None = None
    max_queue: int = 64
    max_batch: int = 8
    baseline_tokens: int = 32
    default_max_tokens: int = 256


class OpenAIError(Exception):
    def __init__(
        self, status: int, message: str, type_: str, param: str | None = None, code: str | None = None
    ):
        super().__init__(message)
        self.status, self.body = status, error_body(message, type_, param, code)


def create_app(config: ServeConfig, llm: LLM | None = None) -> FastAPI:
    """The server's app. `llm` reuses a loaded model (plain decoding); otherwise config.model is loaded."""
    llm = llm or LLM(config.model, device=config.device, dtype=config.dtype)
    methods = Methods(llm, config.spec)
    methods.check(methods.default)
    metrics = Metrics()
    worker = Worker(methods, metrics, config.max_queue, config.max_batch)
    model_name = config.served_model_name or config.model

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await asyncio.to_thread(worker.prepare, config.baseline_tokens)
        worker.start()
        yield
        await asyncio.to_thread(worker.stop)

    app = FastAPI(title="Gorgon", lifespan=lifespan)
    app.state.worker, app.state.metrics, app.state.methods = worker, metrics, methods

    # --------------------------------------------------------------------------------- errors

    def _endpoint(request: Request) -> str:
        return request.url.path.removeprefix("/v1/")

    @app.exception_handler(OpenAIError)
    async def _openai_error(request: Request, exc: OpenAIError) -> JSONResponse:
        outcome = {404: "not_found", 503: "queue_full"}.get(exc.status, "invalid")
        metrics.rejected(_endpoint(request), outcome)
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(GorgonError)
    async def _gorgon_error(request: Request, exc: GorgonError) -> JSONResponse:
        metrics.rejected(_endpoint(request), "invalid")
        return JSONResponse(error_body(str(exc), "invalid_request_error", exc.param), status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.rejected(_endpoint(request), "invalid")
        return JSONResponse(_validation_body(exc.errors()), status_code=400)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return JSONResponse(error_body(str(exc.detail), kind), status_code=exc.status_code)

    # ------------------------------------------------------------------------------ requests

    def _job(body: protocol._Generation, ids: list[int], endpoint: str) -> Job:
        if body.model is not None and body.model != model_name:
            message = f"the model {body.model!r} does not exist (this server serves {model_name!r})"
            raise OpenAIError(404, message, "invalid_request_error", "model", "model_not_found")
        method = methods.check(body.method)
        req = EngineRequest(ids, body.sampling_params(config.default_max_tokens))
        llm.engine.validate(req)
        job = Job(req, method, endpoint, asyncio.get_running_loop())
        try:
            worker.submit(job)
        except QueueFull as e:
            raise OpenAIError(503, str(e), "server_error", None, "queue_full") from None
        return job

    def _chat_ids(messages: list[protocol.ChatMessage]) -> list[int]:
        convo = [m.as_dict() for m in messages]
        if llm.tokenizer.chat_template is None:
            return llm.tokenizer.encode("\n".join(m["content"] for m in convo))
        return llm.tokenizer.apply_chat_template(convo, add_generation_prompt=True, tokenize=True)

    def _prompt_ids(prompt: str | list[int]) -> list[int]:
        return prompt if isinstance(prompt, list) else llm.tokenizer.encode(prompt)

    async def _respond(job: Job, body: protocol._Generation, chat: bool, request: Request) -> Response:
        if body.stream:
            writer = protocol.ChunkWriter(chat, model_name, job.method, body.include_usage)
            return StreamingResponse(_sse(job, writer), media_type="text/event-stream")
        out = await _until_done(job, request)
        make = protocol.chat_response if chat else protocol.completion_response
        return JSONResponse(
            make(protocol.new_id("chatcmpl" if chat else "cmpl"), model_name, out, job.method)
        )

    async def _sse(job: Job, writer: protocol.ChunkWriter):
        # Starlette cancels this generator when the client disconnects (it listens for
        # http.disconnect while streaming): the finally clause then cancels the request.
        done = False
        try:
            if (first := writer.start()) is not None:
                yield first
            async for event in job.stream():
                if isinstance(event, RequestOutput):
                    done = True
                    yield writer.finish(event)
                elif chunk := writer.text(event.text):
                    yield chunk
        except Exception as e:  # the engine failed mid-stream: tell the client in OpenAI's shape
            done = True
            yield protocol.sse(error_body(str(e), "server_error")) + "data: [DONE]\n\n"
        finally:
            if not done:
                worker.cancel(job)

    async def _until_done(job: Job, request: Request) -> RequestOutput:
        """The job's output; a client that disconnects first cancels it."""
        try:
            while True:
                try:
                    item = await asyncio.wait_for(job.events.get(), timeout=0.5)
                except TimeoutError:
                    if await request.is_disconnected():
                        raise asyncio.CancelledError from None
                    continue
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, RequestOutput):
                    return item
        except BaseException:
            worker.cancel(job)
            raise

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        job = _job(body, _prompt_ids(body.prompt_value()), "completions")
        return await _respond(job, body, False, request)

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        job = _job(body, _chat_ids(body.messages), "chat/completions")
        return await _respond(job, body, True, request)

    @app.get("/v1/models")
    async def models() -> dict:
        card = {"id": model_name, "object": "model", "created": 0, "owned_by": "gorgon"}
        return {"object": "list", "data": [card]}

    @app.get("/info")
    async def info() -> dict:
        return {
            "model": model_name,
            "methods": methods.available(),
            "default_method": methods.default,
            "plain_tokens_per_s": worker.plain_tokens_per_s,
            "max_position": llm.config.max_position,
        }

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "queue_depth": worker.queue_depth}

    # ----------------------------------------------------------------------------- WebSocket

    @app.websocket("/v1/generate_stream")
    async def generate_stream(ws: WebSocket) -> None:
        """One generation per connection: send a StreamRequest as JSON; receive one message per step
        ({"type": "step", "text", "token_ids", "tree_debug"}), then {"type": "done", ...} or
        {"type": "error", "error": {...}}; the server then closes."""
        await ws.accept()
        try:
            job, view = _ws_job(await ws.receive_json())
        except (GorgonError, OpenAIError, ValidationError, ValueError) as e:
            await ws.send_json(_ws_error(e))
            await ws.close()
            return
        watch = asyncio.create_task(_watch_disconnect(ws, job))
        done = False
        try:
            async for event in job.stream():
                if isinstance(event, TokenEvent):
                    await ws.send_json({"type": "step", "text": event.text, "token_ids": event.token_ids,
                                        "tree_debug": view.step(event)})  # fmt: skip
                else:
                    done = True
                    stats = protocol.speculative_stats(event, job.method)
                    await ws.send_json({"type": "done", "finish_reason": event.finish_reason,
                                        "text": event.text, "usage": protocol.usage(event),
                                        "speculative": stats})  # fmt: skip
            await ws.close()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            watch.cancel()
            if not done:
                worker.cancel(job)

    def _ws_job(data: object) -> tuple[Job, TreeView]:
        body = StreamRequest.model_validate(data)
        if (body.prompt is None) == (body.messages is None):
            raise GorgonError("send exactly one of prompt (raw text) or messages (chat)", "prompt")
        ids = _chat_ids(body.messages) if body.messages is not None else _prompt_ids(body.prompt)
        job = _job(body, ids, "generate_stream")
        return job, TreeView(llm.tokenizer, job.method, worker.plain_tokens_per_s)

    async def _watch_disconnect(ws: WebSocket, job: Job) -> None:
        try:
            while (await ws.receive())["type"] != "websocket.disconnect":
                pass
        except (WebSocketDisconnect, RuntimeError):
            pass
        worker.cancel(job)

    # ---------------------------------------------------------------------------------- page

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _validation_body(errors: list[dict]) -> dict:
    """A pydantic/FastAPI validation error in OpenAI's shape: the first problem, naming its parameter."""
    first = errors[0] if errors else {"msg": "invalid request", "loc": ()}
    if first.get("type") == "json_invalid":
        return error_body(f"the request body is not valid JSON ({first.get('ctx', {}).get('error', '')})",
                          "invalid_request_error")  # fmt: skip
    param = protocol.validation_param(first.get("loc", ()))
    return error_body(f"{param or 'body'}: {first['msg']}", "invalid_request_error", param)


def _ws_error(e: Exception) -> dict:
    if isinstance(e, OpenAIError):
        return {"type": "error", **e.body}
    if isinstance(e, ValidationError):
        return {"type": "error", **_validation_body(e.errors())}
    return {"type": "error", **error_body(str(e), "invalid_request_error", getattr(e, "param", None))}


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Load the model and serve until interrupted."""
    import uvicorn

    start = time.perf_counter()
    app = create_app(config)
    print(f"gorgon: model loaded in {time.perf_counter() - start:.1f} s; serving on http://{host}:{port}/")
    uvicorn.run(app, host=host, port=port, log_level="warning", ws="websockets-sansio")


class BackgroundServer:
    """`app` served by uvicorn on a thread of this process (tests, notebooks): `with BackgroundServer(app)
    as server:` ... `server.url`. Port 0 picks a free one."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        import socket

        import uvicorn

        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        self.url = f"http://{host}:{port}"
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", ws="websockets-sansio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="gorgon-http", daemon=True)

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)
