"""GGUF loading: every tensor type gguf can dequantize, q/k un-permutation, metadata, against transformers."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize

from gorgon.errors import GorgonError
from gorgon.kv_cache import KVCache
from gorgon.model.weights import GGUFFile, load_model, open_checkpoint
from helpers import tiny_hf_config, write_gguf, write_hf_checkpoint

# Types gguf-py can also quantize (so the test can make real data) and types it only dequantizes.
QUANTIZABLE = [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1]
DEQUANT_ONLY = [Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_NL, Q.IQ4_XS]


def _raw(qtype, rows: int, cols: int, rng) -> np.ndarray:
    if qtype in QUANTIZABLE:
        data = rng.standard_normal((rows, cols)).astype(np.float32)
        return data if qtype == Q.F32 else quantize(data, qtype)
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    # Random blocks whose every byte stays below 0x7C, so any float16 scale inside them is finite.
    return rng.integers(0, 0x7C, size=(rows, cols // block * size), dtype=np.uint8)


@pytest.mark.parametrize("qtype", QUANTIZABLE + DEQUANT_ONLY, ids=lambda q: q.name)
def test_each_type_dequantizes_as_gguf_does(tmp_path, qtype):
    rng = np.random.default_rng(int(qtype))
    raw = _raw(qtype, 6, 512, rng)
    path = tmp_path / "t.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    if qtype in (Q.F32, Q.F16):
        w.add_tensor("t", raw)
    else:
        w.add_tensor("t", raw, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    ours = GGUFFile(path).array("t")
    expected = dequantize(raw, qtype)
    assert ours.shape == (6, 512) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, expected)
    assert np.isfinite(ours).all() and np.abs(ours).max() > 0


@pytest.fixture(scope="module")
def quantized_gguf(tmp_path_factory):
    """A small Llama written as GGUF with a mix of types, and transformers reading the same file."""
    folder = tmp_path_factory.mktemp("gguf")
    # hidden 256 so that k-quant blocks (256 values) fit a row
    config = tiny_hf_config(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
                            num_hidden_layers=2, rope_scaling=None)  # fmt: skip
    hf = write_hf_checkpoint(folder / "hf", config)
    qtypes = {
        "token_embd.weight": Q.Q8_0,
        "blk.0.attn_q.weight": Q.Q4_1,
        "blk.0.attn_k.weight": Q.Q4_0,
        "blk.0.attn_v.weight": Q.Q5_1,
        "blk.0.ffn_up.weight": Q.F16,
        "blk.1.attn_q.weight": Q.Q8_0,
        "blk.1.attn_k.weight": Q.Q5_0,
        "output.weight": Q.BF16,
    }
    path = folder / "model.gguf"
    write_gguf(path, hf, qtypes)
    return path


def test_quantized_model_matches_transformers_reading_the_same_file(quantized_gguf):
    from transformers import AutoModelForCausalLM

    ref_model = AutoModelForCausalLM.from_pretrained(
        str(quantized_gguf.parent), gguf_file=quantized_gguf.name, dtype=torch.float32
    ).eval()
    model = load_model(str(quantized_gguf), torch.device("cpu"), torch.float32).model
    tokens = torch.randint(0, 512, (2, 20), generator=torch.Generator().manual_seed(1))
    cache = KVCache(model.config, 2, 20, torch.device("cpu"), torch.float32)
    with torch.inference_mode():
        ours = model.logits(model(tokens, torch.arange(20).expand(2, -1), cache).hidden)
        ref = ref_model(tokens).logits
    assert ref.abs().max() > 1
    assert (ours - ref).abs().max() / ref.abs().max() < 1e-4


def test_metadata_config_and_tokenizer(quantized_gguf):
    ckpt = open_checkpoint(str(quantized_gguf))
    cfg = ckpt.config
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads) == (256, 2, 4, 2)
    assert cfg.head_dim == 64 and not cfg.tie_embeddings and cfg.rope.theta == 500000.0
    tok = ckpt.tokenizer()
    assert tok.eos_token_ids == (2,) and tok.chat_template
    text = "The quick brown fox jumps over the lazy dog."
    assert tok.decode(tok.encode(text)) == text


def test_llama31_rope_freqs_tensor(tmp_path, quantized_gguf):
    """llama.cpp stores Llama-3.1's frequency rescaling as rope_freqs.weight: it divides the frequencies."""
    from gorgon.model.rope import inverse_frequencies

    reader = gguf.GGUFReader(str(quantized_gguf))
    path = tmp_path / "freqs.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        w.add_key_value(
            field.name, field.contents(), field.types[0], field.types[-1] if len(field.types) > 1 else None
        )
    factors = np.linspace(1.0, 8.0, 32).astype(np.float32)
    w.add_tensor("rope_freqs.weight", factors)
    for t in reader.tensors:
        w.add_tensor(t.name, np.asarray(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    rope = open_checkpoint(str(path)).config.rope
    plain = inverse_frequencies(64, open_checkpoint(str(quantized_gguf)).config.rope)
    torch.testing.assert_close(inverse_frequencies(64, rope), plain / torch.from_numpy(factors))


def test_truncated_file_is_a_clear_error(tmp_path, quantized_gguf):
    data = quantized_gguf.read_bytes()
    for cut in (10, len(data) // 3, len(data) - 100):
        bad = tmp_path / f"cut{cut}.gguf"
        bad.write_bytes(data[:cut])
        with pytest.raises(GorgonError, match="not a readable GGUF file"):
            load_model(str(bad), torch.device("cpu"), torch.float32)


def test_unsupported_architecture_is_named(tmp_path):
    path = tmp_path / "gpt2.gguf"
    w = gguf.GGUFWriter(str(path), "gpt2")
    w.add_block_count(1)
    w.add_tensor("x", np.zeros((2, 2), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(GorgonError, match="'gpt2' is not supported"):
        open_checkpoint(str(path))
