"""The speed-equivalence protocol (notebook 10): does a speed setting train to fp32's accuracy within seed-to-seed
noise? It trains inside its notebook (no job: the settings it compares are the notebook's own parameter).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..config import Preset
from ..recording import cached_record
from ..speed import Speed
from ..train import CHECKPOINT
from .runs import main_spec, train_config, train_or_load
from .stochasticity import stochastic_subset_splits

if TYPE_CHECKING:
    import pandas as pd


def speed_equivalence(
    preset: Preset, speed: Speed, seeds: int = 4, *, seed: int | None = None, progress: bool = True
) -> pd.DataFrame:
    """Does training with ``speed`` reach the accuracy of fp32 within seed-to-seed noise?

    For each seed i < ``seeds``: one fp32 eager run and one ``speed`` run with init and data seed i, the stochasticity
    experiment's schedule (``preset.stochasticity.train`` images, ``preset.stochasticity.epochs`` epochs), evaluated on the whole test set —
    the ``speed`` run both in fp32 and with its own inference settings. Returns one row per (seed, arm) with the test
    accuracy per exit, the overthinking rate and the training seconds; runs and records are cached like any other.
    """
    import pandas as pd

    from ..analysis.overthinking import overthought

    seed = preset.seed_or_own(seed)
    sub = stochastic_subset_splits(preset, seed)
    spec = main_spec(preset, sub["train"])
    out = []
    for i in range(seeds):
        for arm_speed in (Speed(), speed):
            cfg = train_config(
                preset, preset.stochasticity.epochs, seed, init_seed=i + seed, data_seed=i + seed, speed=arm_speed
            )
            model, hist, run = train_or_load(preset, spec, cfg, sub, progress=progress, tag="speedcheck")
            evals = [("fp32", Speed())] + (
                []
                if arm_speed.is_default
                else [(replace(arm_speed, compile=False).describe(), replace(arm_speed, compile=False))]
            )
            for eval_name, eval_speed in evals:
                rec = cached_record(
                    model,
                    sub["test"],
                    preset.run_dir / "records",
                    batch_size=preset.training.eval_batch_size,
                    speed=eval_speed,
                    provenance={"checkpoint": str(run / CHECKPOINT)},
                )
                acc = rec.correct.float().mean(0).tolist()
                out.append(
                    {
                        "seed": i,
                        "train": arm_speed.describe(),
                        "eval": eval_name,
                        **{f"acc_{k + 1}": a for k, a in enumerate(acc)},
                        "acc_mean": sum(acc) / len(acc),
                        "overthought": float(overthought(rec).float().mean()),
                        "train_seconds": float(sum(h["seconds"] for h in hist)),
                    }
                )
    return pd.DataFrame(out)
