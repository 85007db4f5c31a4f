"""Medusa heads and the EAGLE layer: data, training, saving, drafting, and the shipped heads."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from gorgon import LLM, GorgonError, SamplingParams, SpecConfig
from gorgon.heads.base import load_head, save_head
from gorgon.heads.medusa import MedusaConfig, MedusaHeads, best_tree
from gorgon.train.data import TokenDataset, batches, read_prompts
from gorgon.train.distill import DistillConfig, distill, magpie_prefix
from gorgon.train.heads import TrainConfig, evaluate_medusa, frequent_tokens, train_eagle, train_medusa
from gorgon.train.tasks import sentences, task_prompts

QUESTIONS = [f"Tell me about the number {i} and the quick brown fox." for i in range(48)]


@pytest.fixture(scope="module")
def tiny_data(tiny_llm, tmp_path_factory):
    """The tiny model's own greedy answers: a deterministic function of the context, so learnable."""
    path = tmp_path_factory.mktemp("distill") / "prompts.txt"
    path.write_text("\n".join(QUESTIONS))
    cfg = DistillConfig(
        num_samples=len(QUESTIONS), prompts=str(path), batch_size=16, max_tokens=40, temperature=0.0
    )
    return distill(tiny_llm, cfg, progress=False)


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 25, "lr": 3e-3, "tokens_per_batch": 1024, "eval_every": 0, "held_out": 0.2,
                          "progress": False, **kw})  # fmt: skip


def test_dataset_round_trip_and_batches(tmp_path, tiny_data):
    path = tmp_path / "d.safetensors"
    tiny_data.save(path)
    back = TokenDataset.load(path)
    assert back.sequences == tiny_data.sequences and back.prompt_lengths == tiny_data.prompt_lengths
    assert back.meta["target"] == tiny_data.meta["target"]
    seen = sorted(int(n) for b in batches(back, 512, 64) for n in b.lengths)
    assert seen == sorted(min(len(s), 64) for s in back.sequences)
    small = TokenDataset([[1, 2, 3, 4], [5, 6, 7]], [2, 1])
    batch = next(batches(small, 64, 64, seed=None))  # shortest first
    assert batch.tokens.tolist() == [[5, 6, 7, 0], [1, 2, 3, 4]]
    assert batch.loss_mask.tolist() == [[False, True, True, False], [False, False, True, True]]


def test_prompt_files(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"prompt": "hi"}\n{"turns": ["first", "second"]}\n')
    assert read_prompts(tmp_path / "a.jsonl") == ["hi", "first"]
    (tmp_path / "b.txt").write_text("one\n\ntwo\n")
    assert read_prompts(tmp_path / "b.txt") == ["one", "two"]
    (tmp_path / "c.jsonl").write_text('{"text": "no"}\n')
    with pytest.raises(GorgonError, match="prompt"):
        read_prompts(tmp_path / "c.jsonl")


def test_magpie_prefix_opens_a_user_turn(tiny_llm):
    assert (
        tiny_llm.tokenizer.decode(magpie_prefix(tiny_llm), skip_special_tokens=False) == "<|im_start|>user\n"
    )


def test_medusa_training_lowers_loss_and_raises_accuracy(tiny_llm, tiny_data):
    cfg = _cfg()
    untrained = MedusaHeads(MedusaConfig(tiny_llm.config.hidden_size, 3))
    before = evaluate_medusa(tiny_llm.model, untrained, tiny_data.split(0.2)[1], cfg)
    _heads, config, report = train_medusa(tiny_llm.model, tiny_data, cfg, num_heads=3, tree_size=8)
    assert report.losses[-1] < 0.5 * report.losses[0]
    after = report.final
    # (the tiny model repeats itself, so even untrained heads, which copy its next-token guess, score)
    assert after["top1"][0] > before["top1"][0] + 0.1
    assert sum(after["top1"]) > sum(before["top1"]) + 0.15
    assert config["kind"] == "medusa" and len(config["medusa"]["tree"]) == 7


def test_eagle_training_lowers_loss_and_raises_accuracy(tiny_llm, tiny_data):
    cfg = _cfg()
    _layer, config, report = train_eagle(tiny_llm.model, tiny_data, cfg)
    assert report.losses[-1] < 0.7 * report.losses[0]
    assert report.final["top1"][0] > 0.5 and config["kind"] == "eagle"
    assert report.final["top1"][0] > report.evals[0]["top1"][0] or len(report.evals) == 1


@pytest.fixture(scope="module")
def trained(tiny_llm, tiny_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("heads")
    heads, medusa_cfg, _ = train_medusa(tiny_llm.model, tiny_data, _cfg(), num_heads=3, tree_size=8)
    save_head(folder / "medusa", heads, medusa_cfg)
    layer, eagle_cfg, _ = train_eagle(tiny_llm.model, tiny_data, _cfg(), draft_vocab=24)
    eagle_cfg["eagle"].update(top_k=3, depth=3, total_tokens=6)
    save_head(folder / "eagle", layer, eagle_cfg)
    return folder, heads, layer


def test_saved_heads_load_back_to_identical_predictions(tiny_llm, trained):
    folder, heads, _ = trained
    state, config = load_head(folder / "medusa")
    loaded = MedusaHeads(MedusaConfig.from_json(config["medusa"]))
    loaded.load_state_dict(state)
    hidden = torch.randn(5, tiny_llm.config.hidden_size)
    with torch.no_grad():
        assert torch.equal(loaded(hidden), heads(hidden))


@pytest.mark.parametrize(
    "kind, vocab, lookup",
    [("medusa", None, 0), ("eagle", 0, 0), ("eagle", None, 0), ("medusa", None, 3), ("eagle", None, 5)],
)
def test_greedy_with_trained_heads_equals_plain(tiny_llm, trained, kind, vocab, lookup):
    """vocab None: EAGLE drafts over the heads' draft vocabulary (24 tokens here); 0: over all tokens.
    lookup: a prompt-lookup chain of that many tokens beside the heads' tree (5: deeper than EAGLE's 3)."""
    folder = trained[0]
    prompts = [tiny_llm.tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=True)
               for q in ("Tell me about the number 7 and the quick brown fox.", "Tell me about the number 99.")]  # fmt: skip
    params = SamplingParams(max_tokens=40, temperature=0.0)
    expected = [o.token_ids for o in tiny_llm.generate(prompts, params)]
    spec = SpecConfig(kind, heads=str(folder / kind), eagle_draft_vocab=vocab, lookup=lookup)
    llm = LLM.from_model(tiny_llm.model, tiny_llm.tokenizer, speculative=spec)
    outs = llm.generate(prompts, params)
    assert [o.token_ids for o in outs] == expected
    assert max(o.stats["accepted_length"] for o in outs) > 1.5  # the trained heads do get accepted


def test_draft_vocabulary_is_the_answers_most_frequent_tokens(tiny_data, trained):
    ranked, coverage = frequent_tokens(tiny_data, 24)
    counts = Counter(t for s, p in zip(tiny_data.sequences, tiny_data.prompt_lengths) for t in s[p:])
    assert len(ranked) == 24 and len(set(ranked)) == 24
    assert [counts[t] for t in ranked] == sorted((counts[t] for t in ranked), reverse=True)
    assert min(counts[t] for t in ranked) >= max(c for t, c in counts.items() if t not in ranked)
    assert coverage == pytest.approx(sum(counts[t] for t in ranked) / sum(counts.values()))
    config = load_head(trained[0] / "eagle")[1]
    assert config["eagle"]["draft_vocab"] == list(ranked)


def test_heads_for_another_model_are_refused(default_llm, tiny_llm, trained):
    with pytest.raises(GorgonError, match="another model"):
        LLM.from_model(default_llm.model, default_llm.tokenizer,
                       speculative=SpecConfig("medusa", heads=str(trained[0] / "medusa")))  # fmt: skip
    with pytest.raises(GorgonError, match="no eagle heads are shipped"):
        LLM.from_model(tiny_llm.model, tiny_llm.tokenizer, speculative=SpecConfig("eagle"))
    with pytest.raises(GorgonError, match="not 'eagle'"):
        LLM.from_model(tiny_llm.model, tiny_llm.tokenizer,
                       speculative=SpecConfig("eagle", heads=str(trained[0] / "medusa")))  # fmt: skip


def test_best_tree_follows_expected_acceptance():
    accuracy = [[0.6, 0.2, 0.1], [0.5, 0.2, 0.1], [0.4, 0.1, 0.05]]
    tree = best_tree(accuracy, 5)
    # chances: (0) .6, (0,0) .3, (0,0,0) .12, (1) .2, (0,1) .12 -> the four best, then the root
    assert set(tree.paths) == {(0,), (0, 0), (1,), (0, 0, 0)} or set(tree.paths) == {
        (0,),
        (0, 0),
        (1,),
        (0, 1),
    }


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["medusa", "eagle"])
def test_shipped_heads_keep_greedy_output_on_the_default_model(default_llm, kind):
    prompts = [default_llm.tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=True)
               for q in ("Give me three tips for learning to cook.", "What is the boiling point of water?")]  # fmt: skip
    params = SamplingParams(max_tokens=64, temperature=0.0)
    expected = [o.token_ids for o in default_llm.generate(prompts, params)]
    llm = LLM.from_model(
        default_llm.model, default_llm.tokenizer, speculative=SpecConfig(kind)
    )  # shipped heads
    outs = llm.generate(prompts, params)
    assert [o.token_ids for o in outs] == expected
    assert sum(o.stats["accepted_length"] for o in outs) / len(outs) > 1.3


def test_shipped_heads_fit_the_budget():
    from gorgon.heads.base import SHIPPED

    files = list(SHIPPED.glob("*/*.safetensors"))
    assert files and sum(f.stat().st_size for f in files) <= 12 * 1024 * 1024
    for f in files:
        config = json.loads(f.with_suffix(".json").read_text())
        assert config["kind"] in ("medusa", "eagle") and "training" in config


def test_unrolled_eagle_passes_see_what_drafting_sees(tiny_llm, tiny_data):
    """Pass 1 of the unrolled training forward is the teacher-forced one; in pass 2, query i equals one
    drafting step: the layer's cache holding pass 1's entries 0..i, then (its own prediction, the next
    token) at position i + 1."""
    from gorgon.heads.eagle import EagleLayer
    from gorgon.train.heads import _eagle_forward, _eagle_unrolled, _TrainingKV, target_features

    model = tiny_llm.model
    layer = EagleLayer(model.config)
    batch = next(iter(batches(tiny_data, 256, 32, seed=None)))
    batch.loss_mask[:] = True
    features = target_features(model, batch)
    with torch.no_grad():
        (p1, _), (p2, _) = _eagle_unrolled(model, layer, batch, features, steps=2)
        teacher, _ = _eagle_forward(model, layer, batch, features)
        b, t = batch.tokens.shape
        torch.testing.assert_close(p1, teacher.reshape(-1, teacher.shape[-1]))
        p1 = p1.reshape(b, t - 1, -1)
        p2 = p2.reshape(b, t - 2, -1)
        for i in (0, 3, t - 3):
            cache = _TrainingKV(b, t, model.config, torch.device("cpu"))
            positions = torch.arange(i + 1).expand(b, -1)
            layer(model, features[:, : i + 1], batch.tokens[:, 1 : i + 2], positions, cache, kv_len=i + 1)
            step = layer(model, p1[:, i : i + 1], batch.tokens[:, i + 2 : i + 3], torch.full((b, 1), i + 1),
                         cache, kv_len=i + 2)  # fmt: skip
            torch.testing.assert_close(step[:, 0], p2[:, i], rtol=1e-4, atol=1e-5)


def test_unrolled_eagle_training_lowers_loss(tiny_llm, tiny_data):
    _layer, config, report = train_eagle(tiny_llm.model, tiny_data, _cfg(), unroll=2)
    assert report.losses[-1] < 0.7 * report.losses[0]
    assert config["training_unroll"] == 2


@pytest.mark.parametrize("shape", [(3, 8192), (2, 8, 8192), (4, 49152), (5, 100)])
def test_two_stage_topk_matches_torch(shape):
    from gorgon.kernels.reference import _topk

    x = torch.randn(*shape)
    scores, index = _topk(x, 8)
    expected = x.topk(8, dim=-1)
    assert torch.equal(scores, expected.values) and torch.equal(index, expected.indices)


def test_training_continues_from_saved_heads(tiny_llm, tiny_data, trained):
    """A run from saved heads (--init) starts where they left off, not from scratch, and a shape that
    does not fit is one clear error."""
    folder = trained[0]
    fresh = train_eagle(tiny_llm.model, tiny_data, _cfg(epochs=1))[2]
    state = load_head(folder / "eagle")[0]
    continued = train_eagle(tiny_llm.model, tiny_data, _cfg(epochs=1, shuffle_seed=7), init=state)[2]
    assert max(continued.losses) < 0.7 * min(fresh.losses)  # (one epoch is four steps here)
    assert continued.final["top1"][0] > fresh.final["top1"][0] + 0.3
    medusa = load_head(folder / "medusa")[0]
    with pytest.raises(GorgonError, match="another shape"):
        train_medusa(tiny_llm.model, tiny_data, _cfg(epochs=1), num_heads=4, init=medusa)


def test_task_prompts_turn_answers_into_tasks():
    answer = (
        "The river flows north through the valley. Farmers there grow wheat and barley in the spring. "
        "Every autumn the town holds a market where the harvest is sold to visitors from the coast. "
    ) * 3
    pairs = [(f"What happens in valley {i}?", answer.replace("valley", f"valley {i}")) for i in range(20)]
    prompts = task_prompts(pairs, 30, seed=1)
    assert len(prompts) == 30 and len(set(prompts)) == 30
    kinds = {p.split(":")[0] if p.startswith("Translate") else p.split("\n")[0][:12] for p in prompts}
    assert any(p.startswith("Translate into ") for p in prompts) and len(kinds) > 3
    translated = next(p for p in prompts if p.startswith("Translate into ")).split(": ", 1)[1]
    assert any(translated in sentences(a) for _, a in pairs)
    assert task_prompts([("q", "too short")], 5) == []  # nothing to make a task of


def test_distill_with_tasks_answers_them_too(tiny_llm, tmp_path, monkeypatch):
    # (the tiny model's answers are not prose, so the task builder is replaced by one that takes anything)
    seen = []

    def tasks(pairs, count, seed):
        seen.extend(pairs)
        return [f"Summarize: {answer[:40]}" for _, answer in pairs[:count]]

    monkeypatch.setattr("gorgon.train.distill.task_prompts", tasks)
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(QUESTIONS[:8]))
    cfg = DistillConfig(
        num_samples=8, prompts=str(path), batch_size=8, max_tokens=40, temperature=0.0, tasks=6
    )
    data = distill(tiny_llm, cfg, progress=False)
    assert [q for q, _ in seen] == QUESTIONS[:8] and all(a for _, a in seen)
    assert len(data) == 14 and data.meta["tasks"] == "6"
    assert "Summarize: " in tiny_llm.tokenizer.decode(data.sequences[-1][: data.prompt_lengths[-1]])
