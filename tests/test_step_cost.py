"""The step-cost tool: random heads of the shipped shapes, timed steps on the CPU (the GPU profile runs
in the GPU session)."""

from __future__ import annotations

import pytest
import torch

from gorgon.bench.spec import parse_method
from gorgon.bench.step_cost import random_drafter, shipped_config, step_ms
from gorgon.model.shapes import random_model, shape
from gorgon.runner import ModelRunner


@pytest.fixture(scope="module")
def model():
    return random_model(shape("smollm2-135m"), torch.device("cpu"), torch.float32)


def test_random_drafters_take_the_shipped_shapes(model):
    eagle = random_drafter(parse_method("eagle:vocab=512"), model)
    cfg = shipped_config("eagle")
    assert (eagle.config.top_k, eagle.config.depth) == (cfg["top_k"], cfg["depth"])
    assert eagle.tree_size == cfg["total_tokens"] + 1 and len(eagle.config.draft_vocab) == 512
    medusa = random_drafter(parse_method("medusa"), model)
    assert medusa.tree_size == len(shipped_config("medusa")["tree"]) + 1
    assert random_drafter(parse_method("plain"), model) is None


@pytest.mark.parametrize("method", ["plain", "medusa", "eagle:depth=2:total=6:vocab=512"])
def test_steps_are_timed(model, method):
    runner = ModelRunner(model, drafter=random_drafter(parse_method(method), model))
    assert step_ms(runner, prompt=20, steps=2, rounds=1) > 0
