"""Every Triton kernel compiles for the H100 (sm_90), checked without a GPU: the interpreter runs code
that the compiler may still reject, and GPU time is too scarce to find that out there."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys

import pytest
import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from gorgon.kernels import tree_attention as ta
from gorgon.kernels import triton_draft as td
from gorgon.kernels import triton_ops as to
from gorgon.kernels import triton_spec as ts

INDEX_POINTERS = {"POS", "SLOT", "COMMITTED", "PATH", "NACC", "IDX", "PRED", "TOK", "PAR", "DEP", "LAST", "BONUS",
                  "HIST", "SPEC_OUT", "ROOT", "EMIT"}  # fmt: skip
BOOL_POINTERS = {"VALID", "ANC"}
FLOAT32_POINTERS = {"M_OUT", "L_OUT", "ACC", "VAL", "M_IN", "L_IN", "LSE"}

CASES = [
    (to._rms_norm_kernel, {"HAS_RESIDUAL": True, "BLOCK": 1024}),
    (to._rope_kv_kernel, {"HQ": 9, "HKV": 3, "HALF": 32}),
    (to._silu_mul_kernel, {"BLOCK": 1024}),
    (to._decode_split_kernel, {"G": 3, "BLOCK_G": 16, "D": 64, "SPLIT": 256, "BLOCK_N": 64, "DIRECT": True,
                               "PRECISION": "tf32"}),
    (to._decode_split_kernel, {"G": 4, "BLOCK_G": 16, "D": 128, "SPLIT": 512, "BLOCK_N": 64, "DIRECT": False,
                               "PRECISION": "tf32"}),
    (to._decode_merge_kernel, {"BLOCK_S": 32, "D": 64}),
    (to._argmax_partial_kernel, {"BLOCK": 4096}),
    (to._argmax_final_kernel, {"BLOCK_B": 16}),
    (ta._tree_attention_kernel, {"G": 3, "BLOCK_M": 64, "D": 64, "SPLIT": 256, "BLOCK_N": 64, "DIRECT": True,
                                 "PRECISION": "tf32", "PDL": False, "TREE_SPLIT": True}),
    (ta._tree_attention_kernel, {"G": 4, "BLOCK_M": 64, "D": 128, "SPLIT": 512, "BLOCK_N": 64, "DIRECT": False,
                                 "PRECISION": "tf32", "PDL": False, "TREE_SPLIT": True}),
    (ta._tree_attention_kernel, {"G": 4, "BLOCK_M": 16, "D": 128, "SPLIT": 512, "BLOCK_N": 128, "DIRECT": False,
                                 "PRECISION": "tf32", "PDL": True, "TREE_SPLIT": False}),
    (ta._tree_attention_kernel, {"G": 4, "BLOCK_M": 16, "D": 128, "SPLIT": 512, "BLOCK_N": 128, "DIRECT": False,
                                 "PRECISION": "tf32", "PDL": False, "TREE_SPLIT": True, "FUSE": True, "BLOCK_S": 16,
                                 "ROWS_F": 4}),
    (ta._merge_kernel, {"BLOCK_S": 16, "D": 128, "PDL": False}),
    (ta._merge_kernel, {"BLOCK_S": 16, "D": 128, "PDL": True}),
    (to._keep_path_kernel, {"BLOCK": 1024}),
    (ts._accept_greedy_kernel, {"BLOCK_N": 128, "BLOCK_D": 8, "BLOCK_E": 16}),
    (ts._lookup_chain_kernel, {"K": 8, "N_MIN": 2, "N_MAX": 4, "BLOCK": 1024, "BLOCK_K": 8}),
    (ts._lookup_extend_kernel, {"K": 8, "N_MIN": 2, "N_MAX": 4, "BLOCK": 1024, "BLOCK_T": 64, "W1": 2,
                                "HAS_BITS": True}),
    (to._embed_concat_kernel, {"HAS_INDEX": True, "BLOCK_H": 1024}),
    (to._carry_ancestors_kernel, {"BLOCK_K": 16, "BLOCK_P": 64, "BLOCK_W": 2}),
    (ts._commit_step_kernel, {"BLOCK_N": 32, "BLOCK_E": 8}),
    (td._chunk_kernel, {"K": 8, "CHUNK": 1024}),
    (td._select_kernel, {"HAS_PARENT": True, "HAS_VOCAB": True, "K": 8, "R_BLOCK": 8, "C_BLOCK": 8, "W_BLOCK": 64}),
]  # fmt: skip
# arguments whose type the naming rules below would get wrong, per kernel
OVERRIDES = {
    "_tree_attention_kernel": {"COUNT": "*i32"},
    "_chunk_kernel": {"M": "*fp32", "S": "*fp32", "TV": "*fp32", "TI": "*i32", "V": "i32"},
    "_select_kernel": {"M": "*fp32", "S": "*fp32", "TV": "*fp32", "TI": "*i32", "PS": "*fp32", "VOCAB": "*i64",
                       "OS": "*fp32", "OT": "*i64", "OP": "*i64", "R": "i32"},
    "_lookup_chain_kernel": {"CHAIN": "*i64", "OK": "*i8", "S": "i32"},
    "_lookup_extend_kernel": {"O_TOK": "*i64", "O_PAR": "*i64", "O_DEP": "*i64", "O_VALID": "*i8", "O_ANC": "*i8",
                              "O_BITS": "*i32", "S": "i32", "W0": "i32"},
    "_embed_concat_kernel": {"F": "*fp32", "OUT": "*fp32", "H": "i32"},
    "_carry_ancestors_kernel": {"ROWS": "*i1", "PARENT": "*i64", "O_ROWS": "*i8", "O_BITS": "*i32", "K": "i32",
                                "P": "i32", "W": "i32"},
}  # fmt: skip


def _signature(kernel, constants: dict) -> dict:
    sig = {}
    overrides = OVERRIDES.get(kernel.fn.__name__, {})
    for name in kernel.arg_names:
        if name in overrides:
            sig[name] = overrides[name]
        elif name in constants:
            sig[name] = "constexpr"
        elif name in ("scale", "eps"):
            sig[name] = "fp32"
        elif name in INDEX_POINTERS:
            sig[name] = "*i64"
        elif name in BOOL_POINTERS:
            sig[name] = "*i1"
        elif name == "BITS":
            sig[name] = "*i32"
        elif name in FLOAT32_POINTERS:
            sig[name] = "*fp32"
        elif name.isupper() and name not in (
            "N",
            "NT",
            "NCHUNK",
            "T",
            "B",
            "HKV",
            "HQ",
            "NSPLIT",
            "OFFSET",
            "NBLOCKS",
            "WIDTH",
            "DEPTH",
            "PARTS",
            "D",
        ):
            sig[name] = "*bf16"
        else:
            sig[name] = "i32"
    return sig


def _constexpr_defaults(kernel) -> dict:
    """The kernel's constexpr parameters that have defaults (what the JIT fills in when a launch omits them)."""
    return {
        p.name: p.default
        for p in kernel.params
        if p.is_constexpr and p.default is not inspect.Parameter.empty
    }


def compile_all() -> None:
    """Compile every case for sm_90 (needs kernels imported without TRITON_INTERPRET)."""
    for kernel, constants in CASES:
        constants = {**_constexpr_defaults(kernel), **constants}
        constexprs = {(kernel.arg_names.index(k),): v for k, v in constants.items()}
        source = ASTSource(fn=kernel, signature=_signature(kernel, constants), constexprs=constexprs)
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32))
        assert compiled.asm.get("ptx"), kernel.fn.__name__
        print("compiled", kernel.fn.__name__, flush=True)


def _descriptor_type(block: list[int]) -> str:
    """The signature of a bf16 TMA descriptor argument, as the JIT spells it."""
    from triton.experimental.gluon import language as gl
    from triton.runtime.jit import mangle_type

    class _Base:  # what TensorDescriptor reads of a tensor: no device memory needed
        dtype = torch.bfloat16
        shape = (4096, 1024)

        def data_ptr(self):
            return 0

        def stride(self):
            return (1024, 1)

    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    layout = gl.NVMMASharedLayout.get_default_for(block, gl.bfloat16)
    return mangle_type(TensorDescriptor.from_tensor(_Base(), block, layout))


def compile_gluon() -> None:
    """The Hopper wgmma kernels (Gluon) for sm_90: plain and warp-specialized, split and direct, and the
    dynamic-tile kernel in both its tile shapes."""
    from triton.experimental.gluon._runtime import GluonASTSource

    from gorgon.kernels import tree_attention_wgmma as tw

    cases = [
        (tw._wgmma_tree_attention_kernel, {"G": 4, "BLOCK_M": 64, "D": 128, "BLOCK_N": 64, "STAGES": 3,
                                            "DIRECT": False, "num_warps": 4}),
        (tw._wgmma_tree_attention_kernel, {"G": 3, "BLOCK_M": 128, "D": 64, "BLOCK_N": 64, "STAGES": 2,
                                            "DIRECT": True, "num_warps": 8}),
        (tw._ws_tree_attention_kernel, {"G": 4, "D": 128, "BLOCK_N": 128, "STAGES": 2, "DIRECT": False,
                                         "CONSUMER_REGS": 232}),
        (tw._ws_tree_attention_kernel, {"G": 3, "D": 64, "BLOCK_N": 64, "STAGES": 3, "DIRECT": True,
                                         "CONSUMER_REGS": 232}),
        (tw._dyn_tree_attention_kernel, {"G": 4, "D": 128, "BLOCK_N": 64, "STAGES": 4}),
        (tw._dyn_tree_attention_kernel, {"G": 3, "D": 64, "BLOCK_N": 128, "STAGES": 2}),
    ]  # fmt: skip
    for kernel, constants in cases:
        sig = _signature(kernel, constants)
        named = {"PART": "*fp32", "SPLIT": "i32", "SLOTS": "i32", "CTRS": "*i32", "NPROG": "i32"}
        sig.update({k: t for k, t in named.items() if k in sig})
        for name in ("k_desc", "v_desc"):
            if name in sig:  # the warp-specialized kernel's K/V
                sig[name] = _descriptor_type([constants["BLOCK_N"], constants["D"]])
        aligned = [
            i for i, n in enumerate(kernel.arg_names) if sig[n].startswith("*") or n[0] == "s" != n[:5]
        ]
        source = GluonASTSource(
            kernel, sig, constexprs={(kernel.arg_names.index(k),): v for k, v in constants.items()},
            attrs={(i,): [["tt.divisibility", 16]] for i in aligned},  # as the JIT specializes 16-aligned args
        )  # fmt: skip
        warps = constants.get("num_warps", 4)
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={"num_warps": warps})
        assert "wgmma.mma_async" in compiled.asm["ptx"], kernel.fn.__name__
        print("compiled", kernel.fn.__name__, flush=True)


def test_every_kernel_compiles_for_sm90():
    # The test session runs kernels in Triton's interpreter (conftest), whose functions cannot be
    # compiled: compile in a fresh process without it.
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", "import test_kernel_compile as t; t.compile_all()"],
                          cwd=os.path.dirname(__file__), env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("compiled") == len(CASES)


def test_wgmma_kernels_compile_for_sm90():
    from gorgon.kernels.tree_attention_wgmma import HAVE_GLUON

    if not HAVE_GLUON:
        pytest.skip("this Triton has no Gluon")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    proc = subprocess.run([sys.executable, "-c", "import test_kernel_compile as t; t.compile_gluon()"],
                          cwd=os.path.dirname(__file__), env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("compiled") == 6


def test_cuda_kernels_compile_for_sm90():
    """The CUDA C++ kernels (no torch headers in the .cu file) compile with nvcc for sm_90, and for sm_90a
    with the wgmma kernels' warp-group instructions."""
    import shutil
    import tempfile
    from pathlib import Path

    import pytest

    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed here")
    source = Path(to.__file__).parent / "cuda" / "tree_attention.cu"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            nvcc,
            "-std=c++17",
            "-O1",
            "-gencode=arch=compute_90,code=sm_90",
            "-gencode=arch=compute_90a,code=sm_90a",
            "-c",
            str(source),
            "-o",
            f"{tmp}/k.o",
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
