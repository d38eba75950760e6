"""The model-free analyses: every function here reads :class:`~overthink_lib.records.ExitRecord` objects (or plain
arrays) and never a model, a dataset loader or a training run, so they work for any network whose exits were recorded.

This package imports only :mod:`overthink_lib.config` and :mod:`overthink_lib.records` from the rest of the lab
(``tests/test_layers.py`` enforces it)."""
