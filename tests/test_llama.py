"""The model against transformers' LlamaForCausalLM on the same weights (float32)."""

from __future__ import annotations

import json

import pytest
import torch

from gorgon.kv_cache import KVCache
from gorgon.model.weights import load_model
from helpers import tiny_hf_config, write_hf_checkpoint


def _our_logits(folder, tokens: torch.Tensor, hidden_layers=()):
    loaded = load_model(str(folder), torch.device("cpu"), torch.float32)
    model = loaded.model
    b, t = tokens.shape
    cache = KVCache(model.config, b, t, torch.device("cpu"), torch.float32)
    positions = torch.arange(t).expand(b, -1)
    with torch.inference_mode():
        out = model(tokens, positions, cache, hidden_layers=hidden_layers)
        return model.logits(out.hidden), out.layers


def _check_close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    scale = ref.abs().max()
    assert scale > 1.0, "logits too small to tell models apart"
    assert (ours - ref).abs().max() / scale < 1e-4


def _random_tokens(vocab: int, shape=(2, 37), seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(seed))


def _assert_matches(folder, hf, shape=(2, 37)) -> None:
    """Our model loaded from `folder` gives the logits of transformers' `hf` on random tokens."""
    tokens = _random_tokens(hf.config.vocab_size, shape)
    with torch.inference_mode():
        ref = hf(tokens).logits
    _check_close(_our_logits(folder, tokens)[0], ref)


def test_logits_match_transformers_gqa_llama3_rope_untied(tiny_hf):
    folder, hf = tiny_hf
    tokens = _random_tokens(hf.config.vocab_size)
    with torch.inference_mode():
        ref = hf(tokens, output_hidden_states=True)
    ours, layers = _our_logits(folder, tokens, hidden_layers=(1, 0))
    _check_close(ours, ref.logits)
    # hidden_states[i + 1] is the residual stream after layer i (the last entry is after the final norm)
    torch.testing.assert_close(layers[0], ref.hidden_states[2], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layers[1], ref.hidden_states[1], rtol=1e-5, atol=1e-5)


def test_long_positions_use_scaled_rope(tmp_path):
    # Positions far past original_max_position_embeddings exercise every band of the llama3 rescaling.
    hf = write_hf_checkpoint(tmp_path, tiny_hf_config(max_position_embeddings=1024))
    _assert_matches(tmp_path, hf, (1, 700))


def test_sharded_checkpoint_with_legacy_rope_keys(tmp_path):
    hf = write_hf_checkpoint(tmp_path, shard="60KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    # Rewrite the config the way Llama-3.1's own config.json spells RoPE (rope_scaling + rope_theta).
    cfg = json.loads((tmp_path / "config.json").read_text())
    params = cfg.pop("rope_parameters")
    cfg["rope_theta"] = params.pop("rope_theta")
    cfg["rope_scaling"] = params
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    _assert_matches(tmp_path, hf)


def test_tied_embeddings_and_linear_rope(tmp_path):
    config = tiny_hf_config(
        tie_word_embeddings=True, rope_scaling={"rope_type": "linear", "factor": 2.0}, num_key_value_heads=4
    )
    hf = write_hf_checkpoint(tmp_path, config)
    _assert_matches(tmp_path, hf)


def test_qkv_bias_qwen2(tmp_path):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=512, hidden_size=64, intermediate_size=160, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, tie_word_embeddings=False, use_sliding_window=False,
    )  # fmt: skip
    hf = write_hf_checkpoint(tmp_path, config, model_cls=Qwen2ForCausalLM)
    _assert_matches(tmp_path, hf)


def test_tree_mask_equals_separate_branches(tiny_hf):
    """Two branches verified together under an ancestor mask give what each gives alone."""
    folder, _ = tiny_hf
    model = load_model(str(folder), torch.device("cpu"), torch.float32).model
    prefix = _random_tokens(512, (1, 10))
    a, b = torch.tensor([[5, 6]]), torch.tensor([[7, 8]])

    def run(tokens, positions, slots=None, mask=None, kv_len=None):
        cache = KVCache(model.config, 1, 16, torch.device("cpu"), torch.float32)
        with torch.inference_mode():
            model(prefix, torch.arange(10)[None], cache)
            return model.logits(model(tokens, positions, cache, slots=slots, mask=mask, kv_len=kv_len).hidden)

    alone_a = run(a, torch.tensor([[10, 11]]))
    alone_b = run(b, torch.tensor([[10, 11]]))
    # Tree: slots 10..13 hold a0 a1 b0 b1; positions are depths; each node sees the prefix and its ancestors.
    mask = torch.zeros(1, 4, 14, dtype=torch.bool)
    mask[:, :, :10] = True
    for node, ancestors in enumerate([[0], [0, 1], [2], [2, 3]]):
        mask[0, node, [10 + j for j in ancestors]] = True
    tree = run(torch.cat([a, b], 1), torch.tensor([[10, 11, 10, 11]]), torch.arange(10, 14)[None], mask)
    torch.testing.assert_close(tree[:, :2], alone_a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tree[:, 2:], alone_b, rtol=1e-5, atol=1e-5)


def test_hidden_layers_out_of_range(tiny_hf):
    model = load_model(str(tiny_hf[0]), torch.device("cpu"), torch.float32).model
    cache = KVCache(model.config, 1, 4, torch.device("cpu"), torch.float32)
    with pytest.raises(ValueError, match="hidden_layers"):
        model(torch.tensor([[1]]), torch.tensor([[0]]), cache, hidden_layers=(3,))


@pytest.mark.slow
def test_default_model_logits_match_transformers(default_llm, hf_default):
    tokens = torch.tensor(
        [default_llm.tokenizer.encode("The capital of France is Paris, and the capital of")]
    )
    model = default_llm.model
    cache = KVCache(model.config, 1, 64, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        ours = model.logits(model(tokens, torch.arange(tokens.shape[1])[None], cache).hidden)
        ref = hf_default(tokens).logits
    _check_close(ours, ref)
