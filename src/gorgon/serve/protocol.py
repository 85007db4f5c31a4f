"""The OpenAI API's shapes, as far as Gorgon serves them: requests (pydantic), responses, stream chunks,
and the error body `{"error": {"message", "type", "param", "code"}}`.

Unknown request fields are ignored, as OpenAI-compatible servers usually do, so that clients which
send `user`, `logprobs: false` or penalties at their defaults work unchanged. Gorgon's extensions:
`method` (plain or a speculative method the server offers), `top_k`, `ignore_eos`.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from gorgon.config import SamplingParams
from gorgon.engine import RequestOutput
from gorgon.errors import GorgonError


class StreamOptions(BaseModel):
    include_usage: bool = False


class _Generation(BaseModel):
    """Fields common to completions, chat completions and the WebSocket stream."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    top_k: int = Field(0, ge=-1)
    n: int = Field(1, ge=1, le=1)  # one choice per request
    seed: int | None = None
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    method: str | None = None

    def sampling_params(self, default_max_tokens: int) -> SamplingParams:
        stop = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return SamplingParams(
            max_tokens=self.max_tokens or default_max_tokens, temperature=self.temperature, top_p=self.top_p,
            top_k=self.top_k, seed=self.seed, stop=stop, ignore_eos=self.ignore_eos,
        )  # fmt: skip

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class CompletionRequest(_Generation):
    prompt: str | list[int] | list[str] | list[list[int]]

    def prompt_value(self) -> str | list[int]:
        """The one prompt (a string or token ids); a list of several is refused (one prompt per request)."""
        p = self.prompt
        if isinstance(p, list) and p and isinstance(p[0], str | list):
            if len(p) != 1:
                raise GorgonError("send one prompt per request (a string or a list of token ids)", "prompt")
            p = p[0]
        if not p:
            raise GorgonError("the prompt is empty", "prompt")
        return p


class TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def as_dict(self) -> dict[str, str]:
        content = self.content or ""
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class ChatCompletionRequest(_Generation):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)

    def sampling_params(self, default_max_tokens: int) -> SamplingParams:
        if self.max_tokens is None and self.max_completion_tokens is not None:
            self.max_tokens = self.max_completion_tokens
        return super().sampling_params(default_max_tokens)


class StreamRequest(_Generation):
    """A WebSocket generation: a prompt (raw) or messages (through the chat template)."""

    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(None, min_length=1)


# ------------------------------------------------------------------------------------------ errors


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def validation_param(loc: tuple | list) -> str | None:
    """The parameter a pydantic error location names: ("body", "messages", 0, "content") ->
    "messages.0.content"; None for the body as a whole (malformed JSON)."""
    parts = [str(p) for p in loc if p != "body"]
    parts = [p for p in parts if not p.startswith(("str", "list[", "int"))]  # union member names
    return ".".join(parts) or None


# ---------------------------------------------------------------------------------------- responses


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def usage(out: RequestOutput) -> dict[str, int]:
    prompt, completion = len(out.prompt_token_ids), len(out.token_ids)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def speculative_stats(out: RequestOutput, method: str) -> dict[str, Any]:
    """Per-request speculative statistics (Gorgon's extension field `speculative` on responses)."""
    s = out.stats
    return {
        "method": method,
        "tau": s["accepted_length"],  # tokens per target forward, the bonus token included
        "acceptance_rate_per_position": s["acceptance_rate_per_position"],
        "steps": s["steps"],
        "drafted_tokens": sum(s["drafted_per_position"]),
        "accepted_tokens": sum(s["accepted_per_position"]),
        "tokens_per_s": s["tokens_per_s"],
        "decode_tokens_per_s": s["decode_tokens_per_s"],
        "time_to_first_token_s": s["time_to_first_token_s"],
    }


def _envelope(rid: str, obj: str, model: str, created: int, choices: list) -> dict:
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": choices}


def completion_response(rid: str, model: str, out: RequestOutput, method: str) -> dict:
    choice = {"index": 0, "text": out.text, "logprobs": None, "finish_reason": out.finish_reason}
    body = _envelope(rid, "text_completion", model, int(time.time()), [choice])
    return body | {"usage": usage(out), "speculative": speculative_stats(out, method)}


def chat_response(rid: str, model: str, out: RequestOutput, method: str) -> dict:
    message = {"role": "assistant", "content": out.text}
    choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": out.finish_reason}
    body = _envelope(rid, "chat.completion", model, int(time.time()), [choice])
    return body | {"usage": usage(out), "speculative": speculative_stats(out, method)}


class ChunkWriter:
    """Server-sent events for one streamed request: chunks of `chat.completion.chunk` (the role in the
    first delta) or `text_completion` objects, the finish reason and statistics on the last, an optional
    usage chunk, then `data: [DONE]`."""

    def __init__(self, chat: bool, model: str, method: str, include_usage: bool):
        self.chat, self.model, self.method, self.include_usage = chat, model, method, include_usage
        self.id = new_id("chatcmpl" if chat else "cmpl")
        self.created = int(time.time())
        self.object = "chat.completion.chunk" if chat else "text_completion"

    def _chunk(self, choices: list, **extra: Any) -> str:
        return sse(_envelope(self.id, self.object, self.model, self.created, choices) | extra)

    def _choice(self, text: str | None, finish_reason: str | None, role: bool = False) -> dict:
        if not self.chat:
            return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}
        delta = ({"role": "assistant"} if role else {}) | ({"content": text} if text is not None else {})
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    def start(self) -> str | None:
        return self._chunk([self._choice("", None, role=True)]) if self.chat else None

    def text(self, text: str) -> str | None:
        return self._chunk([self._choice(text, None)]) if text else None

    def finish(self, out: RequestOutput) -> str:
        last = self._chunk(
            [self._choice(None if self.chat else "", out.finish_reason)],
            speculative=speculative_stats(out, self.method),
        )
        if self.include_usage:
            last += self._chunk([], usage=usage(out))
        return last + "data: [DONE]\n\n"


def sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"
