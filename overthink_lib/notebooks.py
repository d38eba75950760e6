"""The kernel side of a notebook: its parameters validated and its outputs placed.

A notebook's first library call, :func:`start`, checks every value against its declaration
(:data:`overthink_lib.experiments.PARAMS`: a known preset, a known dataset, λ > 0, ...), refuses names papermill
injected that the notebook does not take, seeds everything and says where figures go (a variant's folder for
parameter overrides, a record's own folder for a given record). The driver that runs the suite headless is
:mod:`overthink_lib.suite`.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .config import ROOT, ConfigError, get_preset, seed_everything
from .experiments import ALIASES, PARAMS


def declared_parameters(path: Path) -> dict[str, dict[str, Any]]:
    """The names, defaults and inferred types of a notebook's ``parameters`` cell (papermill's inspection)."""
    import papermill

    return papermill.inspect_notebook(str(path))


def record_figure_dir(preset_fig_dir: Path, record: str) -> Path:
    """Figures of a given record go to ``<figures>/records/<name>/`` (never over the preset's own figures); the name
    is the record folder's (or the validation file's) name."""
    from .io import safe_name

    first = Path(record.split(",")[0].strip()).expanduser()
    name = first.name if first.is_dir() else first.stem
    return Path(preset_fig_dir) / "records" / safe_name(name or "record")


#: The value rule of every notebook parameter of the suite (declared once: :data:`overthink_lib.experiments.PARAMS`);
#: a name not here is refused by :func:`start`.
RULES: dict[str, Callable[[Any], None]] = {
    **{name: p.check for name, p in PARAMS.items()},
    **{alias: p.check for alias, p in ALIASES.items()},
}


#: Parameters that never make a run a variant (``Param.plain``): which preset and dataset (their outputs are named by
#: them already), whether widgets are built (changes no number), a given record (its outputs go to its own folder).
PLAIN_PARAMS = tuple(name for name, p in PARAMS.items() if p.plain)


#: A notebook may pass a declared parameter to :func:`start` under another name (05: its ``record`` must stay empty).
_ALIASES = {alias: p.name for alias, p in ALIASES.items()}


def variant_name(params: dict[str, Any]) -> str | None:
    """The folder name of a run with parameter overrides (``seed=1`` → ``seed-1``), or None for a plain run (no
    parameter beyond :data:`PLAIN_PARAMS`). Its outputs go to ``runs/<preset>/variants/<name>/``, never over the
    preset's own executed notebooks, figures and results."""
    from .io import safe_name

    over = {k: v for k, v in params.items() if k not in PLAIN_PARAMS}
    if not over:
        return None
    return safe_name("_".join(f"{k}-{over[k]}" for k in sorted(over)))


def variant_dir(preset, params: dict[str, Any]) -> Path | None:
    """``runs/<preset>/variants/<name>/`` of a run with overrides (:func:`variant_name`), else None."""
    name = variant_name(params)
    return None if name is None else preset.run_dir / "variants" / name


def injected_parameters() -> dict[str, Any] | None:
    """The parameters papermill injected into this kernel (its ``# Parameters`` cell, found in the kernel's input
    history), or None outside a papermill run. papermill injects any name it is given, declared or not."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    if shell is None:
        return None
    for source in reversed(list(shell.user_ns.get("In", []))):
        if isinstance(source, str) and source.lstrip().startswith("# Parameters"):
            found = {}
            try:
                tree = ast.parse(source)
            except SyntaxError:
                return None
            for node in tree.body:
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            found[target.id] = shell.user_ns.get(target.id)
            return found
    return None


def _edited_parameters(passed: dict[str, Any]) -> dict[str, Any] | None:
    """In JupyterLab (the kernel knows its notebook's path, ``__session__``): the parameters whose values differ
    from the defaults in the notebook's file — a parameters cell edited before running. None elsewhere."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    session = shell.user_ns.get("__session__") if shell is not None else None
    if not session or not str(session).endswith(".ipynb"):
        return None
    # jupyter-server names the notebook by its path under the server's root; the kernel runs in its folder
    found = [p for p in (Path(session), ROOT / session, Path.cwd() / Path(session).name) if p.is_file()]
    if not found:
        return None
    try:
        declared = declared_parameters(found[0])
    except Exception:
        return None
    edited = {}
    for name, info in declared.items():
        try:
            default = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            continue
        if name in passed and passed[name] != default:
            edited[name] = passed[name]
    return edited


def check_values(params: dict[str, Any]) -> None:
    """Every value against its rule in :data:`RULES` (unknown name or bad value → one ConfigError line)."""
    for name, value in params.items():
        if name not in RULES:
            raise ConfigError(f"unknown notebook parameter {name!r}: known are {', '.join(sorted(RULES))}")
        if value is not None:
            RULES[name](value)


def start(**params: Any) -> SimpleNamespace:
    """A notebook's first library call: validate its parameters, seed everything, return them with the preset.

    Returns:
        A namespace with the parameters, but ``preset`` is the :class:`~overthink_lib.config.Preset` itself (its
        ``name`` is the parameter), plus ``run_dir`` and
        ``fig_dir``. ``seed`` defaults to the preset's seed when the notebook passes ``seed=None``. A non-empty
        ``dataset`` makes it the preset's main dataset (:meth:`~overthink_lib.config.Preset.for_dataset`); figures of a
        dataset other than the preset's own first one go to ``<figures>/<dataset>/``. With a non-empty
        ``record`` parameter (a given record instead of the preset's model), ``fig_dir`` is that record's own
        folder under the preset's figures (:func:`record_figure_dir`).
    """
    check_values(params)
    from .malloc import apply_process_settings

    apply_process_settings()
    injected = injected_parameters()
    passed = {_ALIASES.get(k, k): v for k, v in params.items()}
    if injected is not None:  # run by papermill: a name this notebook does not take would silently do nothing
        unknown = sorted(set(injected) - set(passed))
        if unknown:
            raise ConfigError(
                f"this notebook has no parameter {unknown[0]!r} (given with papermill -p): it takes "
                f"{', '.join(sorted(passed))}"
            )
    if injected is None:  # JupyterLab: the notebook's own file says what its defaults are
        injected = _edited_parameters(passed)
    preset = get_preset(params.get("preset", "cpu"))
    seed = params.get("seed")
    seed = preset.seed_or_own(seed)
    seed_everything(seed)
    preset.run_dir.mkdir(parents=True, exist_ok=True)
    fig_dir = preset.figure_dir
    # overrides given to papermill (by `reproduce --param` or by hand): figures apart from the preset's own
    variant = variant_dir(preset, {k: passed[k] for k in (injected or {})})
    if variant is not None:
        fig_dir = variant / "figures"
        print(
            f"parameters {', '.join(f'{k}={v!r}' for k, v in sorted(injected.items()) if k not in PLAIN_PARAMS)}: "
            f"outputs apart from the preset's own; figures → {fig_dir}"
        )
    dataset = (params.get("dataset") or "").strip()
    if dataset and dataset != preset.datasets[0]:  # another dataset of the preset (or any known one): its own figures
        fig_dir = fig_dir / dataset
        print(f"dataset {dataset!r} (the preset's main dataset is {preset.datasets[0]!r}); figures → {fig_dir}")
    if dataset:
        preset = preset.for_dataset(dataset)
    if (params.get("record") or "").strip():
        fig_dir = record_figure_dir(fig_dir, params["record"])
        print(f"analysing the given record {params['record']}; figures → {fig_dir}")
    fig_dir.mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(
        **{**params, "seed": seed, "preset": preset}, run_dir=preset.run_dir, fig_dir=fig_dir, variant=variant
    )
