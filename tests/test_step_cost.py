"""The step-cost tool: random heads of the shipped shapes, timed steps on the CPU (the GPU profile runs
in the GPU session)."""

from __future__ import annotations

import pytest
import torch

from gorgon.bench.spec import parse_method
from gorgon.bench.step_cost import random_drafter, shipped_config, step_ms
from gorgon.model.shapes import random_model, shape
from gorgon.runner import ModelRunner
from gorgon.spec.drafters import LookupDrafter


@pytest.fixture(scope="module")
def model():
    return random_model(shape("smollm2-135m"), torch.device("cpu"), torch.float32)


def test_random_drafters_take_the_shipped_shapes(model):
    """The heads' shapes and the shipped lookup chain (a LookupDrafter around them), or none (lookup=0)."""
    eagle = random_drafter(parse_method("eagle:vocab=512"), model)
    cfg = shipped_config("eagle")
    assert isinstance(eagle, LookupDrafter) and eagle.k == cfg["lookup"]
    assert (eagle.base.config.top_k, eagle.base.config.depth) == (cfg["top_k"], cfg["depth"])
    assert eagle.tree_size == cfg["total_tokens"] + 1 + cfg["lookup"]
    assert len(eagle.base.config.draft_vocab) == 512
    medusa = random_drafter(parse_method("medusa:lookup=0"), model)
    assert medusa.tree_size == len(shipped_config("medusa")["tree"]) + 1
    assert random_drafter(parse_method("plain"), model) is None


@pytest.mark.parametrize("method", ["plain", "medusa", "eagle:depth=2:total=6:vocab=512"])
def test_steps_are_timed(model, method):
    runner = ModelRunner(model, drafter=random_drafter(parse_method(method), model))
    assert step_ms(runner, prompt=20, steps=2, rounds=1) > 0
