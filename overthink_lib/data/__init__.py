"""Datasets: one registry (:func:`get_dataset`), the Max-Min composites and whole-batch iteration."""

from . import folders, maxmin  # noqa: F401 - register the image-folder and maxmin builders
from .batches import iterate, normalize
from .folders import FolderSet
from .registry import SPLITS, ImageSet, get_dataset, list_datasets, split_rows
from .sources import DatasetUnavailable

__all__ = [
    "SPLITS",
    "DatasetUnavailable",
    "FolderSet",
    "ImageSet",
    "get_dataset",
    "iterate",
    "list_datasets",
    "normalize",
    "split_rows",
]
