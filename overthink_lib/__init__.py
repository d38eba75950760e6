"""overthink_lib: a thin library for studying overthinking in early-exit (multi-exit) neural networks."""
__version__ = "0.1.0"
