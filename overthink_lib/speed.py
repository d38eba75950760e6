"""Speed settings of training and inference: each a switch with a measured default (docs/performance.md).

The defaults are plain fp32 eager PyTorch, because everything the lab publishes must be bit-reproducible on CPU and
the faster settings change the arithmetic (bf16 rounds every activation to 8 bits of mantissa: first-step gradients of
MSDNet differ by 15–30 % in norm; ``torch.compile`` and channels_last pick other kernels that sum in another order;
BatchNorm folding rounds the folded weights once).

What pays depends on the CPU, so :meth:`Speed.fast` asks the CPU (:func:`cpu_info`, the flags of ``/proc/cpuinfo``):

- bf16 autocast (with channels_last, which pays only together with bf16) only where bf16 is native: AMX-bf16 or
  AVX-512-bf16. Elsewhere (AVX2) it is emulated and ran at 0.09× fp32 in training;
- ``torch.compile`` only when the run is long enough to repay its compile (:func:`compile_break_even`, from the
  compile time and gain measured per CPU kind in :data:`COMPILE`);
- the fused SGD step and BatchNorm folding everywhere (≥ 1.0× on every kind measured).

``benchmarks/speed.py`` measures every setting against the fp32 eager baseline on the machine it runs on (and,
given a clone of the official code, the official model side by side); docs/performance.md lists the numbers per CPU
kind.
The chosen set is part of a run's hash and of every record's provenance, so results stay reproducible per machine.

What is *not* a switch because it is always on: images live in memory as one uint8 tensor, batches are sliced and
augmented on the device as whole tensors (:mod:`overthink_lib.data.batches`), there is no per-sample Python work.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from .config import ConfigError


@dataclass(frozen=True)
class CpuInfo:
    """What the CPU offers that decides which speed settings pay.

    Attributes:
        model: the CPU's model name (``/proc/cpuinfo``).
        flags: its feature flags (``avx2``, ``avx512f``, ``avx512_bf16``, ``amx_bf16``, ...).
        id: vendor, family and model (``"AuthenticAMD family 25 model 17"``): the microarchitecture, which the model
            name of a virtual machine ("AMD EPYC") does not tell; ``"unknown"`` without ``/proc/cpuinfo``.
    """

    model: str
    flags: frozenset[str]
    id: str = "unknown"

    @property
    def native_bf16(self) -> bool:
        """Whether bf16 matrix arithmetic is native (AMX-bf16 or AVX-512-bf16), where bf16 autocast pays."""
        return bool({"amx_bf16", "avx512_bf16"} & self.flags)

    @property
    def kind(self) -> str:
        """``avx512-amx``, ``avx512-bf16``, ``avx512``, ``avx2`` or ``other``: the CPU kinds of docs/performance.md."""
        if "amx_bf16" in self.flags:
            return "avx512-amx"
        if "avx512_bf16" in self.flags:
            return "avx512-bf16"
        if "avx512f" in self.flags:
            return "avx512"
        return "avx2" if "avx2" in self.flags else "other"

    def describe(self) -> str:
        return f"{self.model} ({self.kind})"


def parse_cpuinfo(text: str) -> CpuInfo:
    """A :class:`CpuInfo` from the text of ``/proc/cpuinfo`` (the first processor's model name, flags and id)."""
    model, flags = "unknown CPU", frozenset()
    ids: dict[str, str] = {}  # vendor_id, cpu family, model of the first processor's block
    first_block_read = False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        elif key in ("vendor_id", "cpu family", "model") and key not in ids and not first_block_read:
            ids[key] = value.strip()
        if not line.strip() and ids:
            first_block_read = True
    cpu_id = f"{ids.get('vendor_id', '?')} family {ids.get('cpu family', '?')} model {ids.get('model', '?')}"
    return CpuInfo(model, flags, cpu_id)


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    """This machine's CPU (no ``/proc/cpuinfo``, e.g. macOS → no flags: nothing CPU-specific is switched on)."""
    try:
        with open("/proc/cpuinfo") as fh:
            return parse_cpuinfo(fh.read())
    except OSError:
        import platform

        return CpuInfo(platform.processor() or platform.machine(), frozenset())


_PROBE = """
import torch
torch.set_num_threads(1)
torch.nn.functional.conv2d(torch.ones(2, 3, 8, 8), torch.ones(4, 3, 3, 3))  # oneDNN announces its ISA
torch.ones(32, 32) @ torch.ones(32, 32)  # MKL announces its code path
"""


@functools.lru_cache(maxsize=1)
def numerics() -> dict[str, str]:
    """What selects the CPU kernels that a float computation runs here, so what makes two machines give the same
    bits: the torch build, the kernel capability ATen dispatches to (``ATEN_CPU_CAPABILITY`` lowers it), the ISA
    oneDNN chose (``ONEDNN_MAX_CPU_ISA``) and MKL's code path (``MKL_ENABLE_INSTRUCTIONS``; MKL takes another path
    on AMD than on Intel with the same flags). Not the CPU's model name: two models with these equal run the same
    kernels, one model with another setting does not. The thread count is the caller's to add (a training's own).

    oneDNN and MKL report their choice only in their verbose logs, so a child process (about 2 s, once per process)
    runs a convolution and a matrix product with both on and this reads the two lines; a part it cannot read is
    ``"?"`` (then no recorded kind matches, which is safe: exact numbers are simply not compared).
    """
    import os
    import re
    import subprocess
    import sys

    env = {**os.environ, "ONEDNN_VERBOSE": "1", "MKL_VERBOSE": "1", "OMP_NUM_THREADS": "1"}
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
        out = done.stdout + done.stderr
    except (OSError, subprocess.SubprocessError):
        out = ""
    isa = re.search(r"onednn_verbose,.*?,info,cpu,isa:(.*)", out)
    mkl = re.search(r"MKL_VERBOSE .*? for (?:Intel\(R\) 64 architecture )?(.*?), Lnx", out)
    return {
        "torch": torch.__version__,
        "capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_isa": isa.group(1).strip() if isa else "?",
        "mkl": mkl.group(1).strip() if mkl else "?",
    }


def describe_numerics(key: dict) -> str:
    """One line for a :func:`numerics` key (plus ``threads``), as messages name a kind."""
    return (
        f"torch {key.get('torch')}, ATen {key.get('capability')}, oneDNN {key.get('onednn_isa')}, "
        f"MKL {key.get('mkl')}" + (f", {key['threads']} thread(s)" if "threads" in key else "")
    )


#: ``torch.compile`` of MSDNet's training step per CPU kind: (seconds its first step takes with an empty inductor
#: cache, throughput gain of the compiled step over the same settings in eager mode). Measured with
#: ``benchmarks/speed.py`` (docs/performance.md); a kind not listed takes the most pessimistic row.
COMPILE: dict[str, tuple[float, float]] = {
    "avx512-amx": (114.0, 1.41),  # x86 with AVX-512 + AMX-bf16 (68–114 s), earlier measurement
    "avx512-bf16": (145.0, 1.41),  # AMD EPYC (Zen 4: AVX-512-bf16, no AMX), 2026-11-26
    "avx2": (220.0, 1.23),  # AMD EPYC, AVX2 only (2026-11-26: 116 vs 94 img/s, 220 s to compile)
}


#: On CUDA, ``fast`` compiles runs of at least this many eager seconds (a guess, not a measurement: see resolve).
CUDA_COMPILE_AFTER_S = 600.0


def compile_break_even(cpu: CpuInfo | None = None) -> float:
    """Seconds of eager training above which compiling repays its compile time on ``cpu``: cost / (1 − 1/gain)."""
    cost, gain = COMPILE.get((cpu or cpu_info()).kind, max(COMPILE.values(), key=lambda cg: cg[0] / (1 - 1 / cg[1])))
    return math.inf if gain <= 1 else cost / (1 - 1 / gain)


@dataclass(frozen=True)
class Speed:
    """How to run a model fast; every field off = fp32 eager (the default, bit-reproducible on CPU).

    Attributes:
        bf16: bfloat16 autocast on CPU (uses AMX/AVX-512-bf16 where the CPU has them; elsewhere it runs, slowly).
            On CUDA mixed precision is :attr:`TrainConfig.amp`'s business.
        channels_last: NHWC memory format for the model and every batch.
        compile: ``torch.compile`` the model (the first step of each mode pays a compile: 68–114 s for
            MSDNet's training step, 21–37 s for eval, with an empty inductor cache).
        fused_sgd: one fused kernel for the whole SGD step (``torch.optim.SGD(fused=True)``).
        fold_bn: inference only — fold every eval-mode BatchNorm2d into the Conv2d before it.
        auto: "the fastest that pays here": a request, not a setting. :meth:`resolve` (called by
            :func:`~overthink_lib.experiments.runs.train_or_load` and :func:`~overthink_lib.train.fit` before anything is
            hashed or run) turns it into :meth:`fast` for this CPU and the run's expected length.
    """

    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    fused_sgd: bool = False
    fold_bn: bool = False
    auto: bool = False

    def __post_init__(self):
        for f in fields(self):
            if not isinstance(getattr(self, f.name), bool):
                raise ConfigError(f"Speed.{f.name} must be True or False, got {getattr(self, f.name)!r}")

        if self.auto and any(getattr(self, f.name) for f in fields(self) if f.name != "auto"):
            raise ConfigError("Speed(auto=True) is a request that resolve() turns into settings: give it alone")

    @classmethod
    def fast(cls, *, cpu: CpuInfo | None = None, run_seconds: float | None = None) -> Speed:
        """The settings that pay on ``cpu`` (default: this machine's) for a run of ``run_seconds`` eager seconds.

        bf16 and channels_last only with native bf16; compile only when ``run_seconds`` is known and at least
        :func:`compile_break_even`; fused SGD and BatchNorm folding always. Never a setting measured slower than fp32
        eager on that kind of CPU.
        """
        cpu = cpu or cpu_info()
        native = cpu.native_bf16
        long_run = run_seconds is not None and run_seconds >= compile_break_even(cpu)
        return cls(bf16=native, channels_last=native, compile=long_run, fused_sgd=True, fold_bn=True)

    def resolve(
        self, *, cpu: CpuInfo | None = None, run_seconds: float | None = None, device: torch.device | str = "cpu"
    ) -> Speed:
        """Concrete settings: ``auto`` becomes :meth:`fast` for ``cpu`` and the run (on CUDA: the fused SGD step and
        compile for long runs; precision there is :attr:`TrainConfig.amp`'s business); anything else stays."""
        if not self.auto:
            return self
        if torch.device(device).type != "cpu":
            # not measured on a GPU (a guess): compile only for runs of 10+ min
            return Speed(fused_sgd=True, compile=run_seconds is not None and run_seconds >= CUDA_COMPILE_AFTER_S)
        return Speed.fast(cpu=cpu, run_seconds=run_seconds)

    @classmethod
    def parse(cls, text: str) -> Speed:
        """``"fp32"``/``""`` → default; ``"fast"``/``"auto"`` → ``Speed(auto=True)`` (resolved for the machine and
        the run by :meth:`resolve`); or comma-separated field names (``"bf16,compile"``), taken as given."""
        text = text.strip()
        if text in ("", "fp32", "default"):
            return cls()
        if text in ("fast", "auto"):
            return cls(auto=True)
        names = [t.strip() for t in text.split(",") if t.strip()]
        known = {f.name for f in fields(cls)}
        bad = [n for n in names if n not in known]
        if bad:
            raise ConfigError(
                f"unknown speed setting(s) {bad}: use 'fp32', 'fast' or a comma-separated subset of {sorted(known)}"
            )
        return cls(**{n: True for n in names})

    @property
    def is_default(self) -> bool:
        return self == Speed()

    def describe(self) -> str:
        if self.auto:
            return "fast (resolved for this machine at the start of a run)"
        on = [k for k, v in asdict(self).items() if v]
        return "fp32 eager" if not on else "+".join(on)

    def autocast(self, device: torch.device, amp: bool = False):
        """The one precision switch of training and inference: on CUDA, mixed precision when ``amp`` (bf16 where the
        GPU supports it, else fp16); on CPU, bf16 autocast when :attr:`bf16`; ``nullcontext`` otherwise."""
        device = torch.device(device)
        if device.type == "cuda" and amp:
            return torch.autocast("cuda", dtype=torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
        if self.bf16 and device.type == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return nullcontext()

    def batch(self, x: torch.Tensor) -> torch.Tensor:
        """A batch in the memory format the model expects."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x


def benchmark_tables(res: dict) -> dict:
    """``benchmarks/speed.py``'s JSON as one table per part (``train``, ``eval``): img/s, × fp32 eager, first call s."""
    import pandas as pd

    names = {"img_s": "img/s", "ratio": "× fp32 eager", "first_call_s": "first call s"}
    return {
        part: pd.DataFrame(res["throughput"][part]).T[list(names)].astype(float).round(2).rename(columns=names)
        for part in ("train", "eval")
    }


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 matrix units (AMX-bf16 or AVX-512-bf16), where bf16 pays."""
    return cpu_info().native_bf16


def estimate_train_seconds(model: nn.Module, x: torch.Tensor, steps: int, probe_steps: int = 2) -> float:
    """Eager fp32 seconds of ``steps`` training steps of ``model`` on batches like ``x``, from timing
    ``probe_steps`` steps (after one warm-up) on a copy: the model, its optimiser-free weights and every random
    generator are left as they were."""
    import time

    import torch.nn.functional as F

    probe = copy.deepcopy(model).train()
    rng = torch.get_rng_state()
    try:
        times = []
        sync = (
            (lambda: torch.cuda.synchronize(x.device)) if x.is_cuda else (lambda: None)
        )  # the GPU's work, not launches
        for i in range(probe_steps + 1):
            sync()
            t0 = time.perf_counter()
            outs = probe(x)
            outs = outs if isinstance(outs, (list, tuple)) else [outs]
            loss = sum(F.cross_entropy(o.float(), torch.zeros(len(x), dtype=torch.long, device=x.device)) for o in outs)
            loss.backward()
            sync()
            if i:
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_rng_state(rng)
    return steps * sorted(times)[len(times) // 2]


@contextlib.contextmanager
def cpu_threads(n: int):
    """torch's intra-op CPU threads set to ``n`` inside the block (0: unchanged), restored after."""
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) where every Conv2d directly followed by a BatchNorm2d in an ``nn.Sequential``
    carries the normalisation in its weights and bias, and the BatchNorm2d is an Identity.

    ``y = γ (Wx + b − μ) / √(σ² + ε) + β`` becomes ``W' = W · s``, ``b' = (b − μ) · s + β`` with ``s = γ / √(σ² + ε)``.
    Exact in real arithmetic; in fp32 the logits move by ~1e-6 relative (tests pin the tolerance). The original model
    is untouched; the copy is for inference only (its BatchNorms no longer normalise batches in train mode).
    """
    folded = copy.deepcopy(model).eval()
    for seq in folded.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        for i in range(len(seq) - 1):
            conv, bn = seq[i], seq[i + 1]
            if not (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)) or bn.running_var is None:
                continue
            scale = (
                bn.weight / torch.sqrt(bn.running_var + bn.eps) if bn.affine else torch.rsqrt(bn.running_var + bn.eps)
            )
            shift = bn.bias if bn.affine else torch.zeros_like(bn.running_mean)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                conv.kernel_size,
                conv.stride,
                conv.padding,
                conv.dilation,
                conv.groups,
                bias=True,
                padding_mode=conv.padding_mode,
                device=conv.weight.device,
                dtype=conv.weight.dtype,
            )
            new.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
            new.bias.copy_((bias - bn.running_mean) * scale + shift)
            seq[i], seq[i + 1] = new, nn.Identity()
    return folded


def for_inference(model: nn.Module, speed: Speed) -> nn.Module:
    """``model`` prepared for inference with ``speed`` (a new module when anything changes; eval mode).

    Returns the model itself (in eval mode) for settings that need no change; otherwise works on a copy, so the
    caller's model keeps its weights, memory format and mode.
    """
    speed = speed.resolve()
    if not (speed.fold_bn or speed.channels_last or speed.compile):
        return model.eval()
    model = fold_batchnorm(model) if speed.fold_bn else copy.deepcopy(model).eval()
    if speed.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if speed.compile:
        model = torch.compile(model)
    return model


__all__ = [
    "COMPILE",
    "CpuInfo",
    "Speed",
    "compile_break_even",
    "cpu_has_bf16",
    "cpu_info",
    "estimate_train_seconds",
    "fold_batchnorm",
    "for_inference",
    "parse_cpuinfo",
]
