"""Compile the Gluon ws kernel (tree_attention_wgmma._ws_tree_attention_kernel) for sm_90a without a GPU
and write its cubin and PTX, to read its SASS beside the CUDA ws kernel's (../README.md). From the
repository root, with the GPU machines' Triton:

    python3 -m venv /tmp/tr36 && /tmp/tr36/bin/pip install triton==3.6.0
    /tmp/tr36/bin/python reports/h100-2026-11-27f/probes/gluon_sass.py
    /tmp/tr36/lib/python3*/site-packages/triton/backends/nvidia/bin/cuobjdump -sass /tmp/gluon_ws.cubin

The case is batch 8, N=64 (G=4, D=128, unsplit), the one of the Nsight Compute comparison.
"""

import importlib.util
from pathlib import Path

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.experimental.gluon import language as gl
from triton.experimental.gluon._runtime import GluonASTSource
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor
from triton.runtime.jit import mangle_type


class Base:
    """What TensorDescriptor reads of a tensor: its dtype and an aligned address."""

    dtype = tl.bfloat16

    def data_ptr(self) -> int:
        return 1024


def main() -> None:
    path = Path("src/gorgon/kernels/tree_attention_wgmma.py")
    spec = importlib.util.spec_from_file_location("tree_attention_wgmma", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    layout = gl.NVMMASharedLayout.get_default_for([128, 128], gl.bfloat16)
    desc = mangle_type(TensorDescriptor(Base(), [8 * 9000, 1024], [1024, 1], [128, 128], layout))
    fn = module._ws_tree_attention_kernel
    pointers = dict(Q="*bf16", k_desc=desc, v_desc=desc, COMMITTED="*i64", BITS="*i32", LSE="*fp32")
    pointers |= dict(PART="*fp32", OUT="*bf16", scale="fp32")
    const = dict(G=4, D=128, BLOCK_N=128, STAGES=2, DIRECT=True, CONSUMER_REGS=232)
    sig = {n: "constexpr" if n in const else pointers.get(n, "i32") for n in fn.arg_names}
    src = GluonASTSource(fn, sig, {(fn.arg_names.index(k),): v for k, v in const.items()})
    kernel = triton.compile(src, target=GPUTarget("cuda", 90, 32), options={"num_warps": 4})
    Path("/tmp/gluon_ws.cubin").write_bytes(kernel.asm["cubin"])
    Path("/tmp/gluon_ws.ptx").write_text(kernel.asm["ptx"])
    print("shared memory", kernel.metadata.shared)


if __name__ == "__main__":
    main()
