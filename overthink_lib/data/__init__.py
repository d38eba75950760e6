"""Datasets: one registry (:func:`get_dataset`), the Max-Min composites and whole-batch iteration."""

from . import maxmin  # noqa: F401 - registers the 'maxmin' builder
from .batches import iterate, normalize
from .registry import SPLITS, ImageSet, get_dataset, list_datasets, split_rows
from .sources import DatasetUnavailable

__all__ = [
    "SPLITS",
    "DatasetUnavailable",
    "ImageSet",
    "get_dataset",
    "iterate",
    "list_datasets",
    "normalize",
    "split_rows",
]
