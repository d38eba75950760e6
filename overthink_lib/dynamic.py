"""Real early-exit inference: exited samples stop computing (STYLE: the one analysis that touches a model).

The simulated budgeted-batch evaluation (:mod:`overthink_lib.exits`) computes every exit for every sample and picks the
exit afterwards. Here, after each exit, only the samples whose confidence stayed below the threshold continue through
the network (``model.stage`` on the kept rows of the state), so the compute really shrinks. In eval mode every sample
is computed independently of the others, so the predictions equal the simulated ones for the same thresholds (up to
floating-point noise at a threshold's edge).
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .exits import CRITERIA, _check_thresholds
from .models import index_state


@torch.no_grad()
def early_exit(model, x: torch.Tensor, thresholds, criterion: str = "max_softmax") -> dict[str, torch.Tensor]:
    """Budgeted-batch inference with real early exit for one batch.

    Returns:
        ``preds`` [B], ``exits`` [B] (0-based), ``confidence`` [B] at the exit taken.
    """
    t = _check_thresholds(thresholds, model.num_exits)
    conf_fn = CRITERIA[criterion]
    b = x.shape[0]
    preds = torch.empty(b, dtype=torch.long, device=x.device)
    exits = torch.empty(b, dtype=torch.long, device=x.device)
    confs = torch.empty(b, dtype=torch.float32, device=x.device)
    alive = torch.arange(b, device=x.device)
    state = x
    for k in range(model.num_exits):
        state, logits = model.stage(k, state)
        probs = F.softmax(logits.float(), -1)
        conf = conf_fn(probs)
        done = torch.ones_like(conf, dtype=torch.bool) if k == model.num_exits - 1 else conf.double() >= t[k]
        rows = alive[done]
        preds[rows], exits[rows], confs[rows] = probs[done].argmax(-1), k, conf[done].float()
        if bool(done.all()):
            break
        keep = ~done
        state, alive = index_state(state, keep), alive[keep]
    return {"preds": preds, "exits": exits, "confidence": confs}


def timed(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()``."""
    import statistics

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
