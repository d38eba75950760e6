"""Real early-exit inference: exited samples stop computing (STYLE: the one analysis that touches a model).

The simulated budgeted-batch evaluation (:mod:`overthink_lib.analysis.exits`) computes every exit for every sample and picks the
exit afterwards. Here, after each exit, only the samples whose confidence stayed below the threshold continue through
the network (``model.stage`` on the kept rows of the state), so the compute really shrinks. In eval mode every sample
is computed independently of the others, so the predictions equal the simulated ones for the same thresholds (up to
floating-point noise at a threshold's edge).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from .analysis.exits import CRITERIA, check_thresholds
from .models import index_state


@torch.no_grad()
def early_exit(model, x: torch.Tensor, thresholds, criterion: str = "max_softmax") -> dict[str, torch.Tensor]:
    """Budgeted-batch inference with real early exit for one batch.

    Returns:
        ``preds`` [B], ``exits`` [B] (0-based), ``confidence`` [B] at the exit taken.
    """
    t = check_thresholds(thresholds, model.num_exits)
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


def _sync() -> None:
    """Wait for queued GPU work: CUDA kernels run asynchronously, so a clock read without this times their launch."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index in range(torch.cuda.device_count()):  # whichever GPU the timed work runs on
            torch.cuda.synchronize(index)


def timed(fn, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall-clock seconds of ``fn()``, the GPU's queued work included (synchronised before and after)."""
    import statistics

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync()
        t0 = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_vs_flops(
    model,
    images,
    val,
    test,
    *,
    ps=(1, 3, 5, 8, 10, 13, 17, 20, 25, 30),
    batch_size: int = 256,
    repeats: int = 3,
    criterion: str = "max_softmax",
    speed=None,
    progress: bool = False,
):
    """Wall-clock time saved by real early exit against the FLOPs it saves, along the budgeted-batch curve.

    Thresholds for each p come from the validation record ``val`` (thesis Algorithm 1); every p then runs real
    early exit over ``images`` (an :class:`~overthink_lib.data.ImageSet`, usually the test split or a subset of it)
    and is timed against the full network (every exit computed: what the simulated evaluation pays). The FLOPs are
    those of the exits really taken; ``same_as_simulated`` checks them against the simulated evaluation of ``test``
    restricted to the same images.

    Returns:
        One row per p: p, test_acc, mflops, flops_saved, time_full_s, time_s, time_saved, ratio (time saved /
        FLOPs saved), img_s, same_as_simulated.
    """
    import pandas as pd

    from .analysis import exits as ex
    from .data import iterate
    from .malloc import apply_process_settings
    from .speed import Speed, for_inference

    apply_process_settings()  # oneDNN's cache of many shapes; takes effect if no convolution ran yet
    speed = speed or Speed()
    device = next(model.parameters()).device
    net = for_inference(model, speed)
    batches = [speed.batch(x) for x, _, _ in iterate(images, batch_size, device=device)]
    n = len(images)
    flops = test.require_flops("real early exit (FLOPs saved)").double()
    rows_of = {int(i): r for r, i in enumerate(test.indices.tolist())}
    rows = torch.tensor([rows_of[int(i)] for i in images.indices.tolist()])

    def full():
        with torch.no_grad(), speed.autocast(device):
            for x in batches:
                net(x)

    def dynamic(t):
        with speed.autocast(device):
            return [early_exit(net, x, t, criterion) for x in batches]

    t_full = timed(full, repeats)
    curve = ex.budgeted_curve(val, test, ps=ps, criterion=criterion)
    out = []
    for row in curve.itertuples():
        t = row.thresholds[:-1]
        res = dynamic(t)
        taken = torch.cat([r["exits"] for r in res]).cpu()
        preds = torch.cat([r["preds"] for r in res]).cpu()
        sim = ex.apply_thresholds(test, t, criterion)
        sim_exits = torch.as_tensor(sim["exits"])[rows]
        t_dyn = timed(lambda t=t: dynamic(t), repeats, warmup=0)  # the run above was its warm-up
        mflops = float(flops[taken].mean()) / 1e6
        f_saved = 1 - mflops * 1e6 / float(flops[-1])
        time_saved = 1 - t_dyn / t_full
        out.append(
            {
                "p": row.p,
                "test_acc": float((preds == images.labels).double().mean()),
                "mflops": mflops,
                "flops_saved": f_saved,
                "time_full_s": t_full,
                "time_s": t_dyn,
                "time_saved": time_saved,
                "ratio": time_saved / f_saved if f_saved > 0 else float("nan"),
                "img_s": n / t_dyn,
                "same_as_simulated": float((sim_exits == taken).double().mean()),
            }
        )
        if progress:
            print(f"p={row.p}: {f_saved * 100:.1f} % FLOPs saved, {time_saved * 100:.1f} % time saved", flush=True)
    return pd.DataFrame(out)


def latency_per_exit(model, x1: torch.Tensor, repeats: int = 50, speed=None) -> list[float]:
    """Median seconds to run one sample (batch 1) up to each exit: the anytime latency."""
    from .speed import Speed, for_inference

    speed = speed or Speed()
    net = for_inference(model, speed)
    x1 = speed.batch(x1)
    out = []
    for k in range(1, model.num_exits + 1):

        def run(k=k):
            with torch.no_grad(), speed.autocast(x1.device):
                net(x1, upto=k)

        out.append(timed(run, repeats, 5))
    return out


def headlines(table, n: int, settings: str, batch_size: int) -> list[tuple]:
    """Notebook 10's numbers from :func:`time_vs_flops`'s ``table`` over ``n`` images: the full network's throughput,
    and the time saved per FLOP saved (median over the budgets that save more than 5 % of the FLOPs)."""
    out = [
        (
            "full_network_img_per_s",
            n / table["time_full_s"].iloc[0],
            f"full network, {settings}, batch {batch_size}",
            "img/s",
        )
    ]
    saved = table[table["flops_saved"] > 0.05]
    if len(saved):
        ratio = float((saved["time_saved"] / saved["flops_saved"]).median())
        out.append(
            ("time_saved_per_flop_saved", ratio, "real early exit: time saved per FLOP saved (median over budgets)", "")
        )
    return out
