"""The command line: output on stdout, statistics on stderr, and one clear line for every user mistake."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from gorgon.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _assert_clean_error(code, err, needle):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gorgon: error:"), err
    assert needle in lines[0]
    assert "Traceback" not in err


def test_generate_streams_text_and_prints_stats(capsys, tiny_hf):
    code, out, err = _run(capsys, "generate", "The quick brown", "--model", str(tiny_hf[0]), "--raw",
                          "--max-tokens", "6", "--ignore-eos", "--json")  # fmt: skip
    assert code == 0
    stats = json.loads(err.strip().splitlines()[-1])
    assert stats["generated_tokens"] == 6 and stats["finish_reason"] == "length"
    assert out.endswith("\n")


def test_generate_chat_on_default_model(capsys):
    code, out, err = _run(capsys, "generate", "What is the capital of France?", "--max-tokens", "20")
    assert code == 0 and "Paris" in out
    assert "tok/s" in err


def test_info(capsys):
    code, out, _ = _run(capsys, "info", "--json")
    info = json.loads(out)
    assert code == 0 and info["format"] == "gguf" and info["config"]["num_layers"] == 30


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--temperature", "-1"], "temperature"),
        (["--top-p", "0"], "top_p"),
        (["--top-p", "1.5"], "top_p"),
        (["--max-tokens", "0"], "max_tokens"),
        (["--model", "/does/not/exist"], "not found"),
        (["--device", "tpu"], "device"),
        (["--dtype", "int3"], "dtype"),
    ],
)
def test_bad_arguments(capsys, args, needle):
    code, _, err = _run(capsys, "generate", "hi", *args)
    _assert_clean_error(code, err, needle)


def test_truncated_gguf(capsys, tmp_path, default_path):
    bad = tmp_path / "cut.gguf"
    with open(default_path, "rb") as f:
        bad.write_bytes(f.read(5_000_000))
    code, _, err = _run(capsys, "generate", "hi", "--model", str(bad))
    _assert_clean_error(code, err, "not a readable GGUF file")


def test_not_a_model_file(capsys, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    code, _, err = _run(capsys, "generate", "hi", "--model", str(bad))
    _assert_clean_error(code, err, "neither a GGUF file")


def test_corrupt_safetensors(capsys, tmp_path, tiny_hf):
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_hf[0], folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    code, _, err = _run(capsys, "generate", "hi", "--model", str(folder))
    _assert_clean_error(code, err, "not a readable safetensors file")
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    code, _, err = _run(capsys, "generate", "hi", "--model", str(folder))
    _assert_clean_error(code, err, "not a readable safetensors file")


def test_unsupported_architecture(capsys, tmp_path, tiny_hf):
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_hf[0], folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(model_type="gpt_neox", architectures=["GPTNeoXForCausalLM"])
    (folder / "config.json").write_text(json.dumps(cfg))
    code, _, err = _run(capsys, "generate", "hi", "--model", str(folder))
    _assert_clean_error(code, err, "GPTNeoXForCausalLM")


def test_prompt_longer_than_context(capsys, tiny_hf):
    prompt = "The quick brown fox " * 400
    code, _, err = _run(capsys, "generate", prompt, "--model", str(tiny_hf[0]), "--raw")
    _assert_clean_error(code, err, "context")


def test_real_process_exit_status_and_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "gorgon", "generate", "hi", "--model", "/does/not/exist"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("gorgon: error:")


def test_speculative_options(capsys, tiny_hf):
    code, _, err = _run(capsys, "generate", "The quick brown fox", "--model", str(tiny_hf[0]), "--raw",
                          "--max-tokens", "12", "--ignore-eos", "--method", "ngram", "-k", "3")  # fmt: skip
    assert code == 0 and "accepted length (tau)" in err
    code, _, err = _run(capsys, "generate", "hi", "--model", str(tiny_hf[0]), "--method", "draft")
    _assert_clean_error(code, err, "draft_model")
    code, _, err = _run(capsys, "generate", "hi", "--model", str(tiny_hf[0]), "--method", "ngram", "-k", "0")
    _assert_clean_error(code, err, "num_speculative_tokens")
