"""overthink_lib: a thin library for studying overthinking in early-exit (multi-exit) neural networks.

Importing it changes nothing in the process: the speed settings of the process (oneDNN's primitive cache, glibc
keeping freed memory) are applied by the entry points, :func:`overthink_lib.malloc.apply_process_settings`.
"""

__version__ = "0.1.0"
