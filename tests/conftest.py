"""Shared fixtures: the real default model (for truth) and small checkpoints written on the fly."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Without a GPU, Triton kernels run in Triton's interpreter; this must precede Triton's import.
    os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, str(Path(__file__).parent))

from helpers import write_hf_checkpoint


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def default_path() -> Path:
    """The default model's GGUF file. Not skipped when missing: the test command installs it."""
    from gorgon.model.weights import resolve_model_path

    return resolve_model_path("default")


@pytest.fixture(scope="session")
def default_llm(default_path):
    from gorgon import LLM

    return LLM(model=str(default_path), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def hf_default(default_path):
    """transformers' own LlamaForCausalLM reading the same GGUF file: the reference."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(default_path.parent), gguf_file=default_path.name, dtype=torch.float32
    )
    return model.eval()


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory):
    """(folder, transformers model) of a small random Llama: GQA, llama3 RoPE scaling, untied head."""
    folder = tmp_path_factory.mktemp("tiny_hf")
    return folder, write_hf_checkpoint(folder)


@pytest.fixture(scope="session")
def tiny_llm(tiny_hf):
    from gorgon import LLM

    return LLM(model=str(tiny_hf[0]), device="cpu", dtype="float32")
