"""overthink_lib: a thin library for studying overthinking in early-exit (multi-exit) neural networks."""
import os as _os

# Real early exit (dynamic.py) runs every stage on a different number of samples, so oneDNN (bf16/channels_last
# convolutions on CPU) meets thousands of distinct shapes; with its default cache of 1,024 primitives it rebuilds
# them over and over (measured: at p = 20 the time saving fell from 31 % to −6 %). Read when oneDNN first builds a
# primitive, so this works when the lab is imported before any convolution ran; the user's own setting wins.
_os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "65536")

__version__ = "0.1.0"

# Keep freed memory in the process (glibc malloc): the same results, a faster training step and eval on CPU; see
# overthink_lib/malloc.py. OVERTHINK_MALLOC=default before the import leaves the C library as it is.
from . import malloc as _malloc  # noqa: E402

_malloc.configure()
