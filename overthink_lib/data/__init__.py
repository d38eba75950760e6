"""Datasets: one registry (:func:`get_dataset`), the Max-Min composites and whole-batch iteration."""
from .batches import iterate, normalize
from .registry import SPLITS, ImageSet, get_dataset, list_datasets, split_rows
from .sources import DatasetUnavailable
from . import maxmin  # noqa: E402,F401 - registers the 'maxmin' builder

__all__ = ["get_dataset", "list_datasets", "ImageSet", "SPLITS", "split_rows", "iterate", "normalize",
           "DatasetUnavailable"]
