"""Small checkpoints the tests write themselves: HF folders (through transformers) and GGUF files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
    "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "def add(a, b):\n    return a + b\n",
    "Speculative decoding verifies a tree of candidate tokens in one forward pass.",
    "Paris is the capital of France; Berlin is the capital of Germany. 1234567890",
    "Les élèves étudient à l'école. 東京は日本の首都です。 🙂",
]


def train_tokenizer(vocab_size: int = 512):
    """A byte-level BPE tokenizer trained on a few sentences, with ChatML's special tokens at ids 0-2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer)
    return tok


def write_tokenizer(folder: Path, vocab_size: int = 512) -> None:
    tok = train_tokenizer(vocab_size)
    tok.save(str(folder / "tokenizer.json"))
    cfg = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "chat_template": CHATML}
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg))


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Weights large enough that logits differ visibly (transformers' init makes them near zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            p.copy_(1.0 + 0.1 * noise if "norm" in name else 0.08 * noise)


def tiny_hf_config(**overrides):
    """A small Llama config with GQA, Llama-3.1 RoPE scaling and untied embeddings."""
    from transformers import LlamaConfig

    kwargs = dict(
        vocab_size=512,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        tie_word_embeddings=False,
        bos_token_id=1,
        eos_token_id=2,
        rms_norm_eps=1e-5,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def write_hf_checkpoint(folder: Path, config=None, seed: int = 0, shard: str | None = None, model_cls=None):
    """Save a random transformers model (LlamaForCausalLM by default) and a tokenizer; return the model."""
    from transformers import LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    config = config or tiny_hf_config()
    model = (model_cls or LlamaForCausalLM)(config).eval()
    randomize(model, seed)
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(folder, **kwargs)
    write_tokenizer(folder, config.vocab_size)
    return model


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    # llama.cpp's convert_hf_to_gguf permutation of q/k rows (interleaved rotary halves).
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: Path, hf_model, qtypes: dict[str, object] | None = None, tokenizer=None) -> None:
    """Write a transformers Llama as a llama.cpp-style GGUF file (q/k permuted, llama.cpp names),
    quantizing the tensors named in `qtypes` (GGUF name -> GGMLQuantizationType) with gguf-py."""
    import gguf
    from gguf.quants import quantize

    cfg = hf_model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    tok = tokenizer or train_tokenizer(cfg.vocab_size)
    vocab = tok.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])]
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("gpt2")
    w.add_token_list(tokens)
    w.add_token_types([3 if t in SPECIALS else 1 for t in tokens])
    merges = json.loads(tok.to_str())["model"]["merges"]
    w.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in merges])
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(False)
    w.add_chat_template(CHATML)

    sd = {k: v.detach().float().numpy() for k, v in hf_model.state_dict().items()}
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    if "lm_head.weight" in sd and not cfg.tie_word_embeddings:
        names["lm_head.weight"] = "output.weight"
    parts = {
        "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm",
    }  # fmt: skip
    for i in range(cfg.num_hidden_layers):
        for hf, gg in parts.items():
            names[f"model.layers.{i}.{hf}.weight"] = f"blk.{i}.{gg}.weight"
    qtypes = qtypes or {}
    for hf_name, gg_name in names.items():
        data = sd[hf_name]
        if ".attn_q." in gg_name:
            data = _permute(data, cfg.num_attention_heads)
        elif ".attn_k." in gg_name:
            data = _permute(data, cfg.num_key_value_heads)
        qtype = qtypes.get(gg_name, gguf.GGMLQuantizationType.F32)
        if qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(gg_name, data.astype(np.float32))
        else:
            w.add_tensor(gg_name, quantize(data, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_small_vocab_checkpoint(folder: Path, vocab: int = 16, seed: int = 0):
    """A tiny Llama over `vocab` word-level tokens ("t0" .. "t{vocab-1}", "t2" is the end of sequence):
    small enough that sampled distributions can be compared exactly."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True, exist_ok=True)
    words = {f"t{i}": i for i in range(vocab)}
    tok = Tokenizer(models.WordLevel(words, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "t2"}))
    config = tiny_hf_config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=2, num_key_value_heads=1, rope_scaling=None)  # fmt: skip
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(config).eval()
    randomize(model, seed)
    with torch.no_grad():  # peaked next-token distributions: a few tokens carry most of the mass
        model.lm_head.weight.mul_(6.0)
    model.save_pretrained(folder)
    return model


def sample_frequencies(llm, prompt: list[int], draws: int, temperature: float = 1.0) -> torch.Tensor:
    """Joint frequencies of the first two sampled tokens (code x1 + V x2) over `draws` seeds."""
    from gorgon import SamplingParams

    params = [
        SamplingParams(max_tokens=2, temperature=temperature, seed=s, ignore_eos=True) for s in range(draws)
    ]
    outs = llm.generate([prompt] * draws, params)
    v = llm.config.vocab_size
    codes = torch.tensor([o.token_ids[0] + v * o.token_ids[1] for o in outs])
    return torch.bincount(codes, minlength=v * v).float() / draws


def exact_two_tokens(llm, prompt: list[int]) -> torch.Tensor:
    """The target's exact joint distribution of the next two tokens, from one forward per first token."""
    from gorgon.kv_cache import KVCache

    model, v = llm.model, llm.config.vocab_size

    def next_probs(ids: list[int]) -> torch.Tensor:
        cache = KVCache(model.config, 1, 64, torch.device("cpu"), torch.float32)
        with torch.inference_mode():
            hidden = model(torch.tensor([ids]), torch.arange(len(ids))[None], cache).hidden
            return torch.softmax(model.logits(hidden[0, -1]).float(), -1)

    first = next_probs(prompt)
    joint = torch.stack([first[a] * next_probs([*prompt, a]) for a in range(v)])  # [x1, x2]
    return joint.T.reshape(-1)


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * (p - q).abs().sum().item()
