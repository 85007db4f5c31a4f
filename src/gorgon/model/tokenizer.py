"""Text to token ids and back, chat templates, and incremental decoding for streams.

The heavy lifting is the `tokenizers` library's; this module builds its tokenizer from whichever
checkpoint format holds the vocabulary (tokenizer.json, or a GGUF file's metadata), and renders chat
templates with Jinja the way transformers does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers, processors
from tokenizers import Tokenizer as Backend

from gorgon.errors import GorgonError

# Pre-tokenizer splits of byte-level BPE vocabularies, by llama.cpp's `tokenizer.ggml.pre` name.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_PRE_SPLITS = {
    "llama-bpe": _LLAMA3_SPLIT,
    "llama3": _LLAMA3_SPLIT,
    "llama-v3": _LLAMA3_SPLIT,
    "smaug-bpe": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
}
_TOKEN_TYPE_CONTROL, _TOKEN_TYPE_USER_DEFINED = 3, 4


@dataclass
class TokenizerSpec:
    """What a checkpoint says about its tokenizer, before the backend is built."""

    backend: Backend
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()
    chat_template: str | None = None
    special: dict[str, str] = field(default_factory=dict)


class Tokenizer:
    """Encodes, decodes and applies the chat template of one model."""

    def __init__(self, spec: TokenizerSpec):
        self.backend = spec.backend
        self.bos_token_id = spec.bos_token_id
        self.eos_token_ids = spec.eos_token_ids
        self.chat_template = spec.chat_template
        self.special = spec.special
        self._template: jinja2.Template | None = None

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of `text`; `add_special_tokens` adds what the model expects around raw text (BOS)."""
        return self.backend.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.backend.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self.backend.id_to_token(token_id)

    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, tokenize: bool = False
    ) -> str | list[int]:
        """Render chat messages ({"role", "content"} dicts) with the model's template.

        Returns the prompt text, or its token ids with `tokenize=True` (no BOS added: a template that
        wants one writes it itself).
        """
        if not self.chat_template:
            raise GorgonError("this model has no chat template; pass raw text instead (--raw at the CLI)")
        if not messages:
            raise GorgonError("messages must not be empty", "messages")
        for m in messages:
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise GorgonError("each message needs a 'role' and a 'content'", "messages")
        if self._template is None:
            self._template = _jinja_env().from_string(self.chat_template)
        text = self._template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.special.get("bos_token", ""),
            eos_token=self.special.get("eos_token", ""),
        )
        return self.encode(text, add_special_tokens=False) if tokenize else text


class Detokenizer:
    """Turns a growing list of token ids into text deltas, holding back incomplete UTF-8 characters.

    Byte-level vocabularies can split one character over several tokens; decoding a suffix alone
    would print replacement characters, so each delta is the difference between two decodes of a
    short window that starts a few tokens back.
    """

    def __init__(self, tokenizer: Tokenizer, prompt_ids: list[int] | None = None):
        self.tokenizer = tokenizer
        self.ids: list[int] = list(prompt_ids[-4:]) if prompt_ids else []
        self.prefix_offset = 0
        self.read_offset = len(self.ids)

    def push(self, new_ids: list[int]) -> str:
        """Add generated ids; return the newly completed text (possibly empty)."""
        self.ids.extend(new_ids)
        prefix = self.tokenizer.decode(self.ids[self.prefix_offset : self.read_offset])
        full = self.tokenizer.decode(self.ids[self.prefix_offset :])
        if len(full) <= len(prefix) or full.endswith("\ufffd"):
            return ""
        self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
        return full[len(prefix) :]

    def flush(self) -> str:
        """At the end of a stream: whatever was held back (an incomplete character decodes as U+FFFD)."""
        prefix = self.tokenizer.decode(self.ids[self.prefix_offset : self.read_offset])
        full = self.tokenizer.decode(self.ids[self.prefix_offset :])
        self.prefix_offset = self.read_offset = len(self.ids)
        return full[len(prefix) :]


def _jinja_env() -> jinja2.Environment:
    # Settings and helpers as transformers renders chat templates, so templates written for it work.
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )

    def raise_exception(message: str) -> None:
        raise GorgonError(f"chat template error: {message}")

    env.filters["tojson"] = lambda x, indent=None, ensure_ascii=False: json.dumps(
        x, indent=indent, ensure_ascii=ensure_ascii
    )
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env


def from_gguf_metadata(meta: dict[str, Any]) -> TokenizerSpec:
    """Build the tokenizer a GGUF file describes (byte-level BPE vocabularies: `tokenizer.ggml.model`
    "gpt2", as SmolLM2, Llama-3 and Qwen2 files have)."""
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise GorgonError(
            f"GGUF tokenizer type {kind!r} is not supported (only byte-level BPE, 'gpt2'); "
            "use the model's Hugging Face folder with its tokenizer.json instead"
        )
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    types = list(meta.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    merges = [tuple(m.split(" ", 1)) for m in meta.get("tokenizer.ggml.merges", [])]
    backend = Backend(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, fuse_unk=False))
    backend.pre_tokenizer = _gguf_pre_tokenizer(meta.get("tokenizer.ggml.pre", "default"))
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens(
        [
            AddedToken(t, special=True, normalized=False)
            for t, k in zip(tokens, types)
            if k == _TOKEN_TYPE_CONTROL
        ]
    )
    backend.add_tokens(
        [AddedToken(t, normalized=False) for t, k in zip(tokens, types) if k == _TOKEN_TYPE_USER_DEFINED]
    )
    bos = meta.get("tokenizer.ggml.bos_token_id")
    eos = meta.get("tokenizer.ggml.eos_token_id")
    if meta.get("tokenizer.ggml.add_bos_token", False) and bos is not None:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{tokens[bos]} $A",
            pair=f"{tokens[bos]} $A {tokens[bos]} $B",
            special_tokens=[(tokens[bos], bos)],
        )
    eos_ids = [eos] if eos is not None else []
    eot = meta.get("tokenizer.ggml.eot_token_id")
    if eot is not None and eot not in eos_ids:
        eos_ids.append(eot)
    special = {}
    if bos is not None:
        special["bos_token"] = tokens[bos]
    if eos is not None:
        special["eos_token"] = tokens[eos]
    return TokenizerSpec(backend, bos, tuple(eos_ids), meta.get("tokenizer.chat_template"), special)


def _gguf_pre_tokenizer(name: str) -> pre_tokenizers.PreTokenizer:
    if name in _PRE_SPLITS:
        return pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_PRE_SPLITS[name]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if name == "smollm":
        # SmolLM's tokenizer.json: every digit on its own, then GPT-2's split.
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    return byte_level


def from_hf_folder(folder: Path, eos_from_config: tuple[int, ...]) -> TokenizerSpec:
    """Read tokenizer.json, tokenizer_config.json (or chat_template.jinja) and generation_config.json."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise GorgonError(f"{folder} has no tokenizer.json (Gorgon needs the fast-tokenizer file)")
    try:
        backend = Backend.from_file(str(path))
    except Exception as e:
        raise GorgonError(f"{path} is not a readable tokenizer file: {e}") from None
    cfg = _read_json(folder / "tokenizer_config.json")
    template = cfg.get("chat_template")
    if isinstance(template, list):  # named templates: take the default one
        named = {t.get("name"): t.get("template") for t in template}
        template = named.get("default") or next(iter(named.values()), None)
    jinja_file = folder / "chat_template.jinja"
    if template is None and jinja_file.is_file():
        template = jinja_file.read_text()
    special = {}
    for name in ("bos_token", "eos_token"):
        value = cfg.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str):
            special[name] = value
    bos = backend.token_to_id(special["bos_token"]) if "bos_token" in special else None
    eos_ids = list(eos_from_config)
    gen = _read_json(folder / "generation_config.json").get("eos_token_id")
    for e in (gen if isinstance(gen, list) else [gen]) + [
        backend.token_to_id(special["eos_token"]) if "eos_token" in special else None
    ]:
        if e is not None and e not in eos_ids:
            eos_ids.append(e)
    return TokenizerSpec(backend, bos, tuple(eos_ids), template, special)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise GorgonError(f"{path} is not valid JSON: {e}") from None
