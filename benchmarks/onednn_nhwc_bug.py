"""Why no preset trains in channels_last: a oneDNN crash in an NHWC strided-convolution gradient (not a test).

    .venv/bin/python benchmarks/onednn_nhwc_bug.py      # ≈20 s; one fresh process per shape

Each shape runs a 1×1, stride-2 ``Conv2d`` forward and backward in channels_last (NHWC), fp32, one thread, in a fresh
process, and reports whether the process survived. Measured with torch 2.14.1 on AMD EPYC Zen 4 (AVX-512): oneDNN
picks its ``brgconv_strided:avx512_core`` kernel for the input gradient (``ONEDNN_VERBOSE=1``), and with 6 or 8 input
channels at 46 px or more the process dies with a segmentation fault or "double free or corruption" — memory is
written out of bounds. With AVX2 kernels (``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``) the same shapes ran.
Found when the ``smoke`` preset's policy ResNet (8 channels, 64 px Max-Min canvas) crashed in channels_last training.
A kernel that corrupts memory for some shapes may corrupt it silently for others, so the presets train NCHW
(docs/performance.md). Rerun this after a torch upgrade: when every shape survives, channels_last (1.24–1.42× on
one thread here) can be reconsidered.
"""

from __future__ import annotations

import subprocess
import sys

# (batch, input channels, output channels, height = width)
SHAPES = [
    (2, 4, 8, 64),
    (2, 6, 12, 64),
    (2, 8, 8, 64),
    (2, 8, 16, 42),
    (2, 8, 16, 46),
    (2, 8, 16, 64),
    (2, 8, 32, 64),
    (2, 12, 24, 64),
    (2, 16, 32, 64),
    (8, 8, 16, 28),
    (8, 8, 16, 36),
]
CODE = """
import sys, torch
torch.set_num_threads(1)
n, ci, co, h = map(int, sys.argv[1:5])
conv = torch.nn.Conv2d(ci, co, 1, stride=2, bias=False).to(memory_format=torch.channels_last)
x = torch.randn(n, ci, h, h).contiguous(memory_format=torch.channels_last).requires_grad_()
conv(x).sum().backward()
print("ok")
"""


def main() -> None:
    import torch

    print(f"torch {torch.__version__}; 1×1 stride-2 Conv2d, NHWC, fp32, forward + backward, one fresh process each")
    bad = 0
    for shape in SHAPES:
        out = subprocess.run([sys.executable, "-c", CODE, *map(str, shape)], capture_output=True, text=True)
        ok = out.returncode == 0 and out.stdout.strip() == "ok"
        bad += not ok
        why = "" if ok else f"  (exit {out.returncode}: {(out.stderr.strip().splitlines() or ['?'])[-1][:60]})"
        print(
            f"  batch {shape[0]:2d}, {shape[1]:2d} → {shape[2]:2d} channels, {shape[3]:3d} px: "
            f"{'ok' if ok else 'CRASHED'}{why}"
        )
    print(f"{bad} of {len(SHAPES)} shapes crashed" + (": keep the presets on NCHW" if bad else ""))


if __name__ == "__main__":
    main()
