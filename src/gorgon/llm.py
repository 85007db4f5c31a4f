"""The Python API: `LLM(model=...).generate(prompts, SamplingParams(...))`, with vLLM's names."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import torch

from gorgon.config import SamplingParams, SpecConfig
from gorgon.engine import Engine, Request, RequestOutput, TokenEvent
from gorgon.errors import GorgonError
from gorgon.model.llama import Llama
from gorgon.model.tokenizer import Tokenizer
from gorgon.model.weights import load_model
from gorgon.runner import ModelRunner
from gorgon.spec.drafters import build_drafter
from gorgon.spec.verify import TypicalAcceptance

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}

Prompt = str | list[int]
Message = dict[str, Any]


def resolve_device(device: str | torch.device) -> torch.device:
    """ "auto" is the GPU when there is one, else the CPU."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise GorgonError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)", "device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GorgonError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU", "device")
    if dev.type not in ("cpu", "cuda"):
        raise GorgonError(f"device {device!r} is not supported (use cpu or cuda)", "device")
    return dev


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """ "auto" is bfloat16 on a GPU and float32 on the CPU."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise GorgonError(f"unknown dtype {dtype!r} (use float32, bfloat16, float16 or auto)", "dtype")
    return _DTYPES[dtype]


class LLM:
    """A loaded model, ready to generate.

    model: "default" (SmolLM2-135M-Instruct, or $GORGON_MODEL), a GGUF file or a Hugging Face folder.
    device: "auto", "cpu", "cuda"; dtype: "auto", "float32", "bfloat16", "float16".
    cuda_graphs: replay each decode step as a CUDA graph (on a GPU; off only for debugging).
    speculative: a SpecConfig to decode speculatively (n-gram lookup, a draft model, ...).
    """

    def __init__(
        self,
        model: str = "default",
        device: str | torch.device = "auto",
        dtype: str | torch.dtype = "auto",
        cuda_graphs: bool = True,
        speculative: SpecConfig | None = None,
    ):
        dev = resolve_device(device)
        start = time.perf_counter()
        loaded = load_model(model, dev, resolve_dtype(dtype, dev))
        self._setup(loaded.model, loaded.tokenizer, cuda_graphs, speculative)
        self.checkpoint = loaded.checkpoint
        self.load_time_s = time.perf_counter() - start

    @classmethod
    def from_model(
        cls,
        model: Llama,
        tokenizer: Tokenizer,
        cuda_graphs: bool = True,
        speculative: SpecConfig | None = None,
        tree_debug: bool = False,
    ) -> LLM:
        """Wrap a model already in memory (random weights of a named shape, say; or another LLM's model,
        to decode it another way). tree_debug: stream each speculative step's tree (TokenEvent.tree)."""
        llm = cls.__new__(cls)
        llm._setup(model, tokenizer, cuda_graphs, speculative, tree_debug)
        llm.checkpoint, llm.load_time_s = None, 0.0
        return llm

    def _setup(
        self, model: Llama, tokenizer: Tokenizer, cuda_graphs: bool, spec: SpecConfig | None,
        tree_debug: bool = False,
    ) -> None:  # fmt: skip
        self.model, self.tokenizer, self.config = model, tokenizer, model.config
        self.device, self.dtype = model.embed.weight.device, model.embed.weight.dtype
        self.speculative = spec
        drafter = build_drafter(spec, model, tokenizer) if spec else None
        typical = None
        if spec is not None and spec.acceptance == "typical":
            typical = TypicalAcceptance(spec.typical_epsilon, spec.typical_alpha)
        runner = ModelRunner(model, cuda_graphs, drafter=drafter, typical=typical, tree_debug=tree_debug)
        self.engine = Engine(runner, tokenizer)

    # ------------------------------------------------------------------------------- requests

    def _requests(self, prompts: Any, params: SamplingParams | list[SamplingParams] | None) -> list[Request]:
        batch = _as_batch(prompts)
        plist = params if isinstance(params, list) else [params or SamplingParams()] * len(batch)
        if len(plist) != len(batch):
            raise GorgonError(f"{len(plist)} SamplingParams for {len(batch)} prompts", "params")
        ids = [p if isinstance(p, list) else self.tokenizer.encode(p) for p in batch]
        return [Request(i, p) for i, p in zip(ids, plist)]

    def _chat_requests(self, messages: Any, params: Any) -> list[Request]:
        if not isinstance(messages, list) or not messages:
            raise GorgonError("messages must be a non-empty list", "messages")
        conversations = messages if isinstance(messages[0], list) else [messages]
        ids = [
            self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=True)
            for c in conversations
        ]
        return self._requests(ids, params)

    # ------------------------------------------------------------------------------------ API

    def generate(
        self, prompts: Any, params: SamplingParams | list[SamplingParams] | None = None
    ) -> list[RequestOutput]:
        """Continue each prompt (a string, or a list of token ids; or a list of those).

        Returns one RequestOutput per prompt, in order, with .text, .token_ids and .stats.
        """
        return self.engine.generate(self._requests(prompts, params))

    def chat(
        self, messages: Any, params: SamplingParams | list[SamplingParams] | None = None
    ) -> list[RequestOutput]:
        """Answer a conversation ([{"role", "content"}, ...]) or a list of conversations, through the
        model's chat template."""
        return self.engine.generate(self._chat_requests(messages, params))

    def stream(
        self, prompt: Any, params: SamplingParams | None = None, chat: bool = False
    ) -> Iterator[TokenEvent | RequestOutput]:
        """Yield a TokenEvent (new ids and text) per generated token, then the RequestOutput(s).

        `prompt` is what `generate` takes, or chat messages when `chat=True`.
        """
        requests = self._chat_requests(prompt, params) if chat else self._requests(prompt, params)
        yield from self.engine.stream(requests)


def _as_batch(prompts: Any) -> list[Prompt]:
    if isinstance(prompts, str):
        return [prompts]
    if isinstance(prompts, list) and prompts and all(isinstance(t, int) for t in prompts):
        return [prompts]
    if isinstance(prompts, list) and prompts and all(isinstance(p, str | list) for p in prompts):
        return prompts
    raise GorgonError(
        "prompts must be a string, a list of token ids, or a non-empty list of those", "prompts"
    )
