"""Tokenizers built from GGUF metadata and tokenizer.json; chat templates; streaming detokenization."""

from __future__ import annotations

import pytest

from gorgon.errors import GorgonError
from gorgon.model.tokenizer import Detokenizer
from gorgon.model.weights import open_checkpoint

TEXTS = [
    "The capital of France is Paris.",
    "  leading spaces and\ttabs\n\nnew lines",
    "def f(x):\n    return x ** 2  # square",
    "Ünïcödé: café, naïve, 東京, Привет, 🙂🚀",
    "<|im_start|>user\nhi<|im_end|>",
    "don't won't they're I'll",
]


@pytest.fixture(scope="module")
def smol(default_path):
    return open_checkpoint(str(default_path)).tokenizer()


@pytest.fixture(scope="module")
def hf_smol(default_path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(default_path.parent), gguf_file=default_path.name)


@pytest.mark.parametrize("text", TEXTS)
def test_default_tokenizer_matches_transformers(smol, hf_smol, text):
    assert smol.encode(text) == hf_smol(text)["input_ids"]
    ids = smol.encode(text)
    assert smol.decode(ids, skip_special_tokens=False) == text


def test_digits_split_one_by_one_as_smollm_does(smol):
    # llama.cpp's "smollm" pre-tokenizer (and SmolLM2's tokenizer.json) isolate every digit.
    ids = smol.encode("year 2024")
    pieces = [smol.id_to_token(i) for i in ids]
    assert pieces[-4:] == ["2", "0", "2", "4"]


def test_special_tokens_and_eos(smol):
    assert smol.encode("<|im_end|>") == [2]
    assert smol.eos_token_ids == (2,)
    assert smol.decode([1, 28, 2]) == smol.decode([28])


def test_chat_template_matches_transformers(smol, hf_smol):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4"},
        {"role": "user", "content": "And 3+3?"},
    ]
    ours = smol.apply_chat_template(messages, add_generation_prompt=True)
    ref = hf_smol.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert ours == ref
    assert smol.apply_chat_template(messages, tokenize=True) == smol.encode(ref, add_special_tokens=False)
    # without a system message the template adds SmolLM's default one
    assert "You are a helpful AI assistant" in smol.apply_chat_template([messages[1]])


def test_chat_template_bad_messages(smol):
    with pytest.raises(GorgonError, match="empty"):
        smol.apply_chat_template([])
    with pytest.raises(GorgonError, match="role"):
        smol.apply_chat_template([{"content": "no role"}])


def test_hf_folder_tokenizer(tiny_hf):
    folder, _ = tiny_hf
    tok = open_checkpoint(str(folder)).tokenizer()
    assert tok.eos_token_ids == (2,)
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.parametrize("text", TEXTS)
def test_detokenizer_deltas_add_up(smol, text):
    ids = smol.encode(text)
    det = Detokenizer(smol, smol.encode("Prompt:"))
    deltas = [det.push([i]) for i in ids]
    assert "".join(deltas) == smol.decode(ids)
    assert all("\ufffd" not in d for d in deltas)  # split multi-byte characters are held back
