"""Notebook parameters, each declared once: its name, type, the rule its values must keep, and what it changes.

The suite's notebooks declare their parameters as papermill ``parameters`` cells (literal defaults, a comment each);
everything else derives from the declarations here and in the protocol modules (``PARAMS`` of ``imta``, ``policy``),
collected in :data:`overthink_lib.experiments.PARAMS`: the value check of ``notebooks.start`` and of
``reproduce --param``, which parameters travel to jobs (``job``), which make the notebooks train for themselves
(``unmodelled``), which never make a run a variant (``plain``), and where a job finds a parameter's default
(``preset_field``). ``tests/test_notebooks.py`` holds every notebook's cell to them (names, types, defaults).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, get_preset


@dataclass(frozen=True)
class Param:
    """One notebook parameter.

    Attributes:
        name: as in the notebooks' ``parameters`` cells.
        kind: the Python type of its values (a notebook's default has this type).
        check: raises a one-line ConfigError for a bad value.
        job: the jobs read it (it changes what they train; it travels in a ``JobSpec``).
        unmodelled: it changes what the notebooks train in ways the jobs do not model (given, the notebooks train
            what they need themselves).
        plain: it never makes a run a variant (which preset and dataset, widgets on or off, a given record: their
            outputs are named by them already).
        preset_field: ``part.field`` of the preset that gives its value where a notebook leaves it at its default
            (the notebook's default is the preset's value, or ``0``/``""`` meaning "the preset's").
    """

    name: str
    kind: type
    check: Callable[[Any], None]
    job: bool = False
    unmodelled: bool = False
    plain: bool = False
    preset_field: str = ""

    def preset_value(self, preset) -> Any:
        """The preset's value of :attr:`preset_field`."""
        part, field = self.preset_field.split(".")
        return getattr(getattr(preset, part), field)


def integer(name: str, minimum: int = 0) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ConfigError(f"parameter {name} must be an integer >= {minimum}, got {v!r}")

    return check


def positive(name: str) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise ConfigError(f"parameter {name} must be a number > 0, got {v!r}")

    return check


def fraction(name: str) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
            raise ConfigError(f"parameter {name} must be a number in (0, 1], got {v!r}")

    return check


def boolean(name: str) -> Callable[[Any], None]:
    def check(v: Any) -> None:
        if not isinstance(v, bool):
            raise ConfigError(f"parameter {name} must be True or False, got {v!r}")

    return check


def choice(name: str, module: str, attr: str) -> Callable[[Any], None]:
    """One of ``overthink_lib.<module>.<attr>`` (read when checked: the list has one place, its module)."""

    def check(v: Any) -> None:
        choices = getattr(importlib.import_module(f"overthink_lib.{module}"), attr)
        if v not in choices:
            raise ConfigError(f"parameter {name} must be one of {', '.join(choices)}, got {v!r}")

    return check


def _dataset(v: Any) -> None:
    from ..data import list_datasets

    if v == "":  # the preset's main dataset
        return
    if v not in list_datasets():
        raise ConfigError(f"unknown dataset {v!r}: choose one of {', '.join(list_datasets())}")
    if v in ("imagefolder", "imagenet"):  # streamed from disk: the notebooks' networks train on in-memory sets
        raise ConfigError(
            f"dataset {v!r} is read from disk batch by batch, too large (imagenet) or without a place (imagefolder) "
            "for the notebooks' in-memory training: make records of it (record_from_folder, "
            "examples/official_imagenet.py) and pass them as record=...; imagenette works as a dataset"
        )


def _speed(v: Any) -> None:
    from ..speed import Speed

    if not isinstance(v, str):
        raise ConfigError(f"parameter speed must be a string like 'fp32', 'fast' or 'bf16,fold_bn', got {v!r}")
    Speed.parse(v)


def _record(v: Any) -> None:
    if not isinstance(v, str):
        raise ConfigError(
            f"parameter record must be a string (a folder with val.npz and test.npz, or VAL,TEST), got {v!r}"
        )
    if v.strip():
        from ..records import load_records

        load_records(v)


def _gradcam_record(v: Any) -> None:
    if v:
        raise ConfigError(
            "GradCAM (notebook 05) needs the model itself, not only its records: run it on the preset's model "
            '(record = ""), or call overthink_lib.cams on your own model'
        )


#: The parameters every protocol shares, and the analyses' own (they change no training).
COMMON: tuple[Param, ...] = (
    Param("preset", str, lambda v: get_preset(v), plain=True),
    Param("seed", int, integer("seed"), job=True),
    Param("dataset", str, _dataset, plain=True),
    Param("epochs", int, integer("epochs"), unmodelled=True),
    Param("record", str, _record, unmodelled=True, plain=True),
    Param("show_widgets", bool, boolean("show_widgets"), plain=True),
    Param("n_examples", int, integer("n_examples")),
    Param("n_boot", int, integer("n_boot")),
    Param("n_stat", int, integer("n_stat")),
    Param("n_bins", int, integer("n_bins", 1)),
    Param("criterion", str, choice("criterion", "analysis.exits", "CRITERIA")),
    Param("cam_method", str, choice("cam_method", "cams", "METHODS")),
    Param("cam_target", str, choice("cam_target", "cams", "TARGETS")),
    Param("dct_share", float, fraction("dct_share")),
    Param("dct_measure", str, choice("dct_measure", "analysis.dct", "ANALYSIS_MEASURES")),
    Param("dct_order", str, choice("dct_order", "analysis.dct", "ORDERS")),
    Param("n_images", int, integer("n_images", 1)),
    Param("batch_size", int, integer("batch_size", 1)),
    Param("repeats", int, integer("repeats", 1)),
    Param("speed", str, _speed),
)

#: A notebook may declare a parameter under another name (05: its ``record`` must stay empty).
ALIASES: dict[str, Param] = {"gradcam_record": Param("record", str, _gradcam_record, unmodelled=True, plain=True)}
