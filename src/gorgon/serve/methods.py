"""The decoding methods a server offers: one LLM per method, all sharing the one loaded model.

The page's method selector and the `method` request field pick among them. Each speculative method has
its own runner (KV cache, drafter, buffers) and reads its step's tree back for the tree view; the
model's weights are shared, and only the engine thread runs any of them.
"""

from __future__ import annotations

import dataclasses
import time

from gorgon.config import SPEC_METHODS, SamplingParams, SpecConfig
from gorgon.errors import GorgonError
from gorgon.llm import LLM

PLAIN = "plain"
_BASELINE_PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


class Methods:
    """`base` decodes plainly; `spec` (optional) configures the speculative methods (its method's
    options, e.g. heads or tree sizes; the other methods take the same k and their defaults)."""

    def __init__(self, base: LLM, spec: SpecConfig | None = None):
        self.base, self.spec = base, spec
        self.default = spec.method if spec is not None else PLAIN
        self._llms: dict[str, LLM] = {PLAIN: base}

    def available(self) -> list[str]:
        from gorgon.heads.base import shipped

        names = [PLAIN]
        for m in SPEC_METHODS:
            configured = self.spec is not None and self.spec.method == m
            if m == "ngram" or configured or (m in ("medusa", "eagle") and shipped(m, self.base.model)):
                names.append(m)
        return names

    def check(self, method: str | None) -> str:
        """The method a request asks for (None: the server's default), if offered."""
        method = method or self.default
        if method not in self.available():
            raise GorgonError(
                f"method {method!r} is not offered by this server (offered: {', '.join(self.available())})",
                "method",
            )
        return method

    def get(self, method: str) -> LLM:
        """The LLM for `method`, built on first use (call from the engine thread only)."""
        if method not in self._llms:
            self._llms[method] = LLM.from_model(
                self.base.model, self.base.tokenizer, self.base.engine.runner.use_graphs,
                speculative=self._spec_config(method), tree_debug=True,
            )  # fmt: skip
        return self._llms[method]

    def _spec_config(self, method: str) -> SpecConfig:
        if self.spec is not None and self.spec.method == method:
            return self.spec
        if self.spec is None:
            return SpecConfig(method=method)
        return dataclasses.replace(self.spec, method=method, heads=None, draft_model=None, draft_layers=None)

    def measure_plain_speed(self, tokens: int) -> float:
        """Plain greedy decoding speed (tokens/s after the first token) on this model, batch 1: the base
        of the speedups the server reports. A first run warms up (kernels, cache), the second is timed."""
        params = SamplingParams(max_tokens=tokens, temperature=0.0, ignore_eos=True)
        prompt = self.base.tokenizer.encode(_BASELINE_PROMPT)
        self.base.generate(prompt, SamplingParams(max_tokens=4, temperature=0.0, ignore_eos=True))
        start = time.perf_counter()
        out = self.base.generate(prompt, params)[0]
        return out.stats["decode_tokens_per_s"] or tokens / (time.perf_counter() - start)
