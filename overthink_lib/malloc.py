"""Keep freed memory in the process instead of handing it back to the kernel (glibc ``malloc``), for speed.

PyTorch on CPU allocates and frees the same large activation and gradient tensors at every step. With glibc's
defaults a block of more than 128 KiB – 32 MiB (the threshold adapts) is a fresh ``mmap`` each time and goes back to
the kernel with ``munmap`` when freed, and the top of the heap is trimmed: every step then pays page faults on
memory it had a moment ago, and with more than one thread each ``munmap`` stops the other cores to flush their
TLBs. Measured on the 2-core AMD EPYC (Zen 4) machine, CIFAR-100 MSDNet, 2 threads: training step +20 %, eval
+55 % (``benchmarks/speed.py``, docs/performance.md). The arithmetic is untouched (same kernels, same
alignment: PyTorch aligns its CPU tensors itself), so results are bit-identical (``tests/test_speed.py``).

``keep`` (the lab's default, set by its entry points — ``notebooks.start()``, the CLI and so its job workers,
through :func:`apply_process_settings`; importing ``overthink_lib`` changes nothing): no ``mmap`` for blocks and
no trimming, so the process keeps the peak of its heap (about what it used at its busiest; a training process here
≈1.5 GB). ``OVERTHINK_MALLOC=default`` leaves glibc as it is. On a C library other than glibc nothing changes. The
state is recorded in every ``results.json`` (``malloc``).
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

from .config import ConfigError

CHOICES = ("keep", "default")
# mallopt parameters (glibc malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
_state = "default"


def configure(setting: str | None = None) -> str:
    """Apply ``setting`` (else ``$OVERTHINK_MALLOC``, else ``keep``) to this process's glibc malloc; the state."""
    global _state
    setting = setting if setting is not None else os.environ.get("OVERTHINK_MALLOC", "keep")
    if setting not in CHOICES:
        raise ConfigError(
            f"OVERTHINK_MALLOC={setting!r} is not one of {', '.join(CHOICES)}: unset it (the lab keeps "
            "freed memory, faster) or set it to 'default' (glibc as it is)"
        )
    if setting == "keep" and _state != "keep" and sys.platform == "linux" and platform.libc_ver()[0] == "glibc":
        libc = ctypes.CDLL(None)
        # mallopt returns 1 on success; the trim threshold first, so a failure leaves the defaults in place
        if libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(2**31 - 1)) == 1 and libc.mallopt(M_MMAP_MAX, 0) == 1:
            _state = "keep"
    return _state


def state() -> str:
    """``keep`` when this process's malloc keeps freed memory (see :func:`configure`), else ``default``."""
    return _state


#: oneDNN primitive cache entries. Real early exit (``dynamic.py``) runs every stage on a different number of
#: samples, so oneDNN meets thousands of distinct shapes; with its default cache of 1,024 primitives it rebuilds them
#: over and over (measured: at p = 20 the time saving fell from 31 % to −6 %). oneDNN reads the variable when it
#: first builds a primitive, so it takes effect only before the process's first convolution.
ONEDNN_CACHE = "65536"


def apply_process_settings() -> str:
    """The lab's process settings, which change no number: oneDNN's primitive cache and freed memory kept.

    Called by the entry points (``notebooks.start()``, ``python -m overthink_lib``, so every job worker) and by
    ``dynamic.time_vs_flops``; importing the library applies nothing. The user's own ``ONEDNN_PRIMITIVE_CACHE_CAPACITY``
    and ``OVERTHINK_MALLOC`` win. Returns the malloc state.
    """
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_CACHE)
    return configure()
