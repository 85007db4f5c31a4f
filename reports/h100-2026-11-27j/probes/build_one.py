"""Build one study extension of .ws_timeline.py (several run at once): usage .build_one.py NAME"""
import importlib.util
import os
import sys
from pathlib import Path

from gorgon.kernels import cuda_ops

spec = importlib.util.spec_from_file_location("t", Path(__file__).parent / ".ws_timeline.py")
t = importlib.util.module_from_spec(spec)
spec.loader.exec_module(t)
os.environ["TORCH_CUDA_ARCH_LIST"] = "9.0a"
name = sys.argv[1]
if name == "ship":
    cuda_ops.extension()
elif name == "old":
    cuda_ops.build("gorgon_old", t.OLD, "old", ["-lineinfo"])
elif name == "tl":
    cuda_ops.build("gorgon_tl", t.timeline_sources(Path("build/study/timeline")), "tl", ["-lineinfo"])
elif name == "lq":
    cuda_ops.build("gorgon_lq", cuda_ops.SOURCES, "lq", ["-lineinfo", "-DGORGON_WS_EARLY_Q=0"])
elif name == "ns":
    cuda_ops.build("gorgon_ns", t.variant_sources(Path("build/study/ns"), stage=False), "ns", ["-lineinfo"])
elif name == "np":
    cuda_ops.build("gorgon_np", t.variant_sources(Path("build/study/np"), prefetch=False), "np", ["-lineinfo"])
elif name.startswith("ml"):
    cuda_ops.build(f"gorgon_{name}", cuda_ops.SOURCES, name, ["-lineinfo", f"-DGORGON_MERGE_LOADS={name[2:]}"])
print("built", name)
