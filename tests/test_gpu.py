"""On a CUDA GPU: graphs replay exactly what eager steps compute, and the GPU agrees with the CPU."""

from __future__ import annotations

import pytest

from gorgon import LLM, SamplingParams, SpecConfig

pytestmark = pytest.mark.gpu

PROMPTS = ["The capital of France is", "def quicksort(arr):", "Write a short poem about autumn leaves."]


@pytest.fixture(scope="module")
def gpu_bf16(default_path):
    return LLM(model=str(default_path), device="cuda", dtype="bfloat16")


def test_graph_replay_equals_eager_bf16(default_path, gpu_bf16):
    eager = LLM(model=str(default_path), device="cuda", dtype="bfloat16", cuda_graphs=False)
    params = SamplingParams(max_tokens=300, temperature=0.0, ignore_eos=True)  # crosses a kv bucket
    graphed = gpu_bf16.generate(PROMPTS, params)
    plain = eager.generate(PROMPTS, params)
    assert [o.token_ids for o in graphed] == [o.token_ids for o in plain]
    sampled = SamplingParams(max_tokens=64, temperature=0.8, top_p=0.9, top_k=50, seed=3, ignore_eos=True)
    assert gpu_bf16.generate(PROMPTS, sampled)[1].token_ids == eager.generate(PROMPTS, sampled)[1].token_ids


def test_graph_replay_equals_eager_with_tree_decode_attention(default_path, monkeypatch):
    """Decode attention through the tree kernel (GORGON_DECODE_KERNEL=tree): graphs, whose attended length
    is a bucket, split the context where eager steps do, so bf16 tokens agree one for one."""
    monkeypatch.setenv("GORGON_DECODE_KERNEL", "tree")
    params = SamplingParams(max_tokens=300, temperature=0.0, ignore_eos=True)  # crosses a kv bucket
    graphed = LLM(model=str(default_path), device="cuda", dtype="bfloat16").generate(PROMPTS, params)
    eager = LLM(model=str(default_path), device="cuda", dtype="bfloat16", cuda_graphs=False)
    assert [o.token_ids for o in graphed] == [o.token_ids for o in eager.generate(PROMPTS, params)]


def test_batch_equals_one_by_one_on_gpu(gpu_bf16):
    params = SamplingParams(max_tokens=48, temperature=0.0, ignore_eos=True)
    batch = gpu_bf16.generate(PROMPTS, params)
    singles = [gpu_bf16.generate(p, params)[0] for p in PROMPTS]
    # bf16 GEMMs of different batch sizes may round differently; demand a long common prefix.
    for b, s in zip(batch, singles):
        common = next((i for i, (x, y) in enumerate(zip(b.token_ids, s.token_ids)) if x != y), 48)
        assert common >= 16


def test_gpu_float32_equals_cpu_float32(default_path, default_llm):
    gpu = LLM(model=str(default_path), device="cuda", dtype="float32")
    params = SamplingParams(max_tokens=32, temperature=0.0)
    assert [o.token_ids for o in gpu.generate(PROMPTS, params)] == [
        o.token_ids for o in default_llm.generate(PROMPTS, params)
    ]


def test_long_prompts_prefilled_eagerly_agree_with_graphed_prefill(gpu_bf16):
    # 3 x 2100 tokens pads to 3 x 4096 > GRAPHED_PREFILL_TOKENS: chunked eager prefill; one alone is graphed.
    base = gpu_bf16.tokenizer.encode(
        "The history of the printing press begins in the fifteenth century. " * 150
    )
    prompts = [base[:2100], base[5:2000], base[9:2050]]
    params = SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True)
    together = gpu_bf16.generate(prompts, params)
    for p, out in zip(prompts, together):
        alone = gpu_bf16.generate([p], params)[0]
        common = next((i for i, (x, y) in enumerate(zip(out.token_ids, alone.token_ids)) if x != y), 16)
        assert common >= 8


SPECS = [SpecConfig("ngram", num_speculative_tokens=4), SpecConfig("draft", draft_layers=8, num_speculative_tokens=3),
         SpecConfig("draft", draft_layers=8, num_speculative_tokens=2, num_branches=2), SpecConfig("medusa"),
         SpecConfig("eagle"), SpecConfig("eagle", lookup=6), SpecConfig("medusa", lookup=4)]  # fmt: skip
IDS = ["ngram", "draft-chain", "draft-tree", "medusa", "eagle", "eagle-lookup", "medusa-lookup"]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_speculative_greedy_equals_plain_on_gpu_float32(default_path, spec):
    plain = LLM(model=str(default_path), device="cuda", dtype="float32")
    fast = LLM(model=str(default_path), device="cuda", dtype="float32", speculative=spec)
    params = SamplingParams(max_tokens=64, temperature=0.0)
    expected = [o.token_ids for o in plain.generate(PROMPTS, params)]
    assert [o.token_ids for o in fast.generate(PROMPTS, params)] == expected


@pytest.mark.parametrize("method", ["ngram", "eagle"])
def test_speculative_graphs_replay_what_eager_steps_compute(default_path, method):
    """Greedy for both; seeded sampling for n-gram drafts only. EAGLE's trees come from the layer's own
    matrix products, which eager prefill (exact prompt lengths) and graphed prefill (padded to a bucket)
    run at different shapes: roundings differ in the last bits, a near-tie among candidates can change
    the tree, and a different tree draws different random numbers in speculative sampling (the same
    distribution, not the same sample). On the H100 (2026-11-25) the EAGLE case with both modes failed
    (bf16 and float32; which mode diverged was not recorded); this greedy-only form has not run on a GPU
    yet. Float32, so that greedy verification has no near-ties to flip."""
    spec = SpecConfig(method, num_speculative_tokens=3)
    graphed = LLM(model=str(default_path), device="cuda", dtype="float32", speculative=spec)
    eager = LLM(model=str(default_path), device="cuda", dtype="float32", speculative=spec, cuda_graphs=False)
    eager.engine.runner.bucketed = True  # the same attended lengths as the graphs
    params = [SamplingParams(max_tokens=80, temperature=0.0)]
    if method == "ngram":
        params.append(SamplingParams(max_tokens=80, temperature=0.9, top_p=0.9, seed=5))
    for p in params:
        assert [o.token_ids for o in graphed.generate(PROMPTS, p)] == [
            o.token_ids for o in eager.generate(PROMPTS, p)
        ]


@pytest.mark.parametrize(
    "method", ["ngram", "eagle"]
)  # eagle: the drafting ops' reference versions in graphs
def test_each_backend_gives_the_reference_output(default_path, monkeypatch, method):
    params = SamplingParams(max_tokens=48, temperature=0.0)
    spec = (
        SpecConfig("ngram", num_speculative_tokens=4, num_branches=2)
        if method == "ngram"
        else SpecConfig("eagle")
    )
    outputs = {}
    for backend in ("reference", "triton", "cuda"):
        monkeypatch.setenv("GORGON_ATTENTION", backend)
        llm = LLM(model=str(default_path), device="cuda", dtype="float32", speculative=spec)
        outs = llm.generate(PROMPTS, params)
        assert {o.stats["backend"] for o in outs} == {backend}
        outputs[backend] = [o.token_ids for o in outs]
    assert outputs["triton"] == outputs["reference"]
    assert outputs["cuda"] == outputs["reference"]


@pytest.mark.parametrize("method", ["plain", "ngram", "eagle"])
def test_continuous_batching_under_graphs_equals_alone(default_path, method):
    from test_continuous import SPECS, _requests, _serve

    llm = LLM(model=str(default_path), device="cuda", dtype="float32", speculative=SPECS[method])
    reqs = _requests(llm, [24, 6, 17, 30, 9, 20])
    alone = [llm.engine.generate([r])[0].token_ids for r in reqs]
    served = _serve(llm, reqs, batch=3, arrive_every=2)
    assert [served[i].token_ids for i in range(len(reqs))] == alone


def test_tree_debug_under_graphs_changes_nothing(default_path):
    spec = SpecConfig("eagle", eagle_top_k=4, eagle_depth=4, eagle_total_tokens=12)
    params = SamplingParams(max_tokens=32, temperature=0.0)
    base = LLM(model=str(default_path), device="cuda", dtype="float32", speculative=spec)
    debug = LLM.from_model(base.model, base.tokenizer, speculative=spec, tree_debug=True)
    events = [e for e in debug.stream(PROMPTS[0], params) if hasattr(e, "tree") and e.tree is not None]
    assert events and all(e.tree.tokens for e in events)
    assert debug.generate(PROMPTS[0], params)[0].token_ids == base.generate(PROMPTS[0], params)[0].token_ids
