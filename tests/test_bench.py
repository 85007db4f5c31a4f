"""The benchmark harness: reports, plots, multi-turn prompt files, sweeps, and the cost model's arithmetic."""

from __future__ import annotations

import json
import time

from gorgon.bench.cost import project
from gorgon.cli import main

ROW_FIELDS = {"category", "method", "tok_s", "tau", "acceptance_per_position", "ttft_s", "latency_p50_s",
              "latency_p90_s", "peak_memory_mb", "speedup_vs_plain", "speedup_vs_hf", "greedy_match"}  # fmt: skip


def _last_run(out):
    return json.loads((out / "benchmark.jsonl").read_text().splitlines()[-1])


def test_cpu_run_writes_markdown_jsonl_and_plots(tmp_path):
    start = time.perf_counter()
    code = main(["bench", "--methods", "plain,ngram:k=2", "--prompts", "math", "--max-tokens", "8", "--repeats", "1",
                 "--out", str(tmp_path), "--no-progress"])  # fmt: skip
    assert code == 0 and time.perf_counter() - start < 60
    md = (tmp_path / "benchmark.md").read_text()
    assert md.startswith("## Benchmark") and "| math | ngram:k=2 |" in md and "Machine:" in md
    run = _last_run(tmp_path)
    assert {r["method"] for r in run["rows"]} == {"plain", "ngram:k=2"}
    for row in run["rows"]:
        assert set(row) >= ROW_FIELDS
    assert run["settings"]["max_tokens"] == 8 and "torch" in run["machine"]
    for name in run["plots"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_spec_bench_file_runs_every_turn(tmp_path, tiny_hf):
    prompts = tmp_path / "questions.jsonl"
    rows = [{"question_id": 81, "category": "writing", "turns": ["Tell me about foxes.", "Now shorter."]},
            {"question_id": 82, "category": "math", "turns": ["What is 2 + 2?", "And times 3?"]}]  # fmt: skip
    prompts.write_text("\n".join(json.dumps(r) for r in rows))
    code = main(["bench", "--model", str(tiny_hf[0]), "--methods", "plain", "--prompts", str(prompts),
                 "--max-tokens", "4", "--repeats", "1", "--out", str(tmp_path), "--no-progress"])  # fmt: skip
    assert code == 0
    run = _last_run(tmp_path)
    by_cat = {r["category"]: r for r in run["rows"]}
    assert set(by_cat) == {"writing", "math", "all"}
    assert by_cat["all"]["tokens"] == 4 * 4  # two conversations of two turns, four tokens each


def test_warmup_passes_run_every_prompt_untimed_first(tmp_path, tiny_hf, monkeypatch):
    """--warmup-passes N: N untimed passes over all prompts per method before the timed repeats (a GPU
    otherwise captures graphs for longer attended lengths inside timed requests)."""
    from gorgon.bench import harness

    calls, real = [], harness._generate_all
    monkeypatch.setattr(
        harness, "_generate_all", lambda *a, **kw: calls.append(kw.get("bar")) or real(*a, **kw)
    )
    code = main(["bench", "--model", str(tiny_hf[0]), "--methods", "plain,ngram", "--prompts", "math",
                 "--max-tokens", "4", "--repeats", "2", "--warmup-passes", "1", "--out", str(tmp_path),
                 "--no-progress"])  # fmt: skip
    assert code == 0 and _last_run(tmp_path)["settings"]["warmup_passes"] == 1
    timed = [c for c in calls if c is not None]
    assert len(calls) - len(timed) == 2 and len(timed) == 2 * 2  # warm-up: one pass per method


def test_sweep_adds_variants_and_a_curve(tmp_path, tiny_hf):
    code = main(["bench", "--model", str(tiny_hf[0]), "--methods", "plain,ngram", "--prompts", "math", "--max-tokens",
                 "6", "--repeats", "1", "--sweep", "num_speculative_tokens=1,3", "--out", str(tmp_path),
                 "--no-progress"])  # fmt: skip
    assert code == 0
    run = _last_run(tmp_path)
    methods = {r["method"] for r in run["rows"]}
    assert {"ngram[num_speculative_tokens=1]", "ngram[num_speculative_tokens=3]"} <= methods
    assert any(p.startswith("sweep_num_speculative_tokens") for p in run["plots"])


def test_bad_prompt_set_is_a_clear_error(capsys):
    assert main(["bench", "--prompts", "poetry", "--methods", "plain"]) == 2
    assert "unknown prompt categories" in capsys.readouterr().err


def test_cost_projection_arithmetic():
    costs = {"plain_step_ms": 6.0, "tree_ms": {1: 6.2, 16: 6.9, 64: 7.2}}
    proj = project(costs, tau=3.0, tree_tokens=20)
    assert proj["timed_tree_tokens"] == 64 and abs(proj["projected_speedup"] - 3.0 * 6.0 / 7.2) < 1e-9
