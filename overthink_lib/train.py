"""Training and evaluation of multi-exit models: one code path for CPU, CUDA and ``torchrun`` DDP.

- loss: Σ_k γ_k · CE_k over the exits (thesis Eq 3.6; γ_k = 1 by default, as the official code);
- SGD, momentum 0.9, weight decay 1e-4, lr 0.1 with step decay (thesis: ×0.1 at epochs 75 and 150 of 200) or a
  one-cycle schedule for short CPU runs; the lr is a pure function of the step, so resuming needs no scheduler state;
- separately seeded randomness: ``init_seed`` (weights) and ``data_seed`` (order and augmentation of epoch e are drawn
  from (data_seed, e)), so the two sources can be varied one at a time;
- a checkpoint after every epoch, written atomically, with model and optimizer state, config, seeds, epoch, RNG
  states and the metrics so far; ``fit(..., resume=True)`` continues a killed run and reaches the same weights as an
  uninterrupted run on CPU;
- AMP (bf16, or fp16 with a grad scaler) on CUDA; fp32 on CPU unless :class:`~overthink_lib.speed.Speed` asks for
  bf16 autocast, channels_last, ``torch.compile`` or a fused SGD step (all off by default: see :mod:`.speed`).
"""

from __future__ import annotations

import csv
import io
import math
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import COMPUTE_VERSIONS, ConfigError, code_version, seed_everything
from .data import ImageSet, iterate
from .io import atomic_torch_save, atomic_write_bytes, config_hash, safe_torch_load
from .models import MultiExit, model_from_spec
from .speed import Speed, cpu_has_bf16, cpu_threads, estimate_train_seconds, for_inference

CHECKPOINT = "checkpoint.pt"
#: The weights half-way through a run of an even number of epochs (a checkpoint without optimizer state): what the
#: IMTA protocol branches from (the thesis fine-tunes "for the final 50 epochs of the training process").
HALFWAY = "checkpoint-halfway.pt"
METRICS = "metrics.csv"
#: Folder in a run: the validation logits :func:`fit` computed after the last epoch (and at the half-way snapshot),
#: keyed by the weights' hash, so that a record of those weights on that split reuses them instead of running the
#: network over the split again (:func:`load_predictions`).
PREDICTIONS = "predictions"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run besides the model and the data.

    Attributes:
        epochs: epochs to train.
        batch_size: per-process batch size (thesis: 64).
        lr: peak learning rate.
        momentum, weight_decay, nesterov: SGD settings.
        schedule: ``step`` (×``lr_gamma`` at each milestone), ``onecycle`` (linear warm-up over the first 20 % of
            the steps from lr/10 to lr, then linear decay to 0) or ``constant``.
        milestones: epochs of the step decay; values < 1 are fractions of ``epochs`` (official: 0.5, 0.75).
        lr_gamma: the step decay's factor.
        exit_weights: γ_k per exit (None → all 1).
        init_seed: seed of the weight initialisation.
        data_seed: seed of the data order and augmentation.
        augment: use the dataset's training augmentation.
        amp: bf16 (fp16 where bf16 is missing) autocast on CUDA; ignored on CPU. Off by default: the official code
            trains in fp32, and on an H100 this launch-bound network trained *slower* with autocast (1,165 vs
            1,357 img/s, a real epoch 43.1 vs 32.7 s; ``benchmarks/cuda_check.py``).
        eval_batch_size: batch size of evaluation.
        speed: how fast (and how exactly) to compute: :class:`~overthink_lib.speed.Speed` (default fp32 eager).
        threads: CPU threads of the training (0: leave torch's setting). A CPU training's numbers depend on its
            thread count (the backward pass sums over threads in another order), so a preset pins it
            (``Preset.training.threads``): the same run gives the same network on a machine of any core count, in a
            notebook or in the suite's job workers, which run two one-thread trainings at once (see
            :mod:`overthink_lib.jobs`). Part of the run's hash when set.
    """

    epochs: int
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "step"
    milestones: tuple[float, ...] = (0.5, 0.75)
    lr_gamma: float = 0.1
    exit_weights: tuple[float, ...] | None = None
    init_seed: int = 0
    data_seed: int = 0
    augment: bool = True
    amp: bool = False
    eval_batch_size: int = 512
    speed: Speed = Speed()
    threads: int = 0

    def __post_init__(self):
        if isinstance(self.speed, dict):  # a config read back from a checkpoint
            object.__setattr__(self, "speed", Speed(**self.speed))
        if not isinstance(self.speed, Speed):
            raise ConfigError(f"TrainConfig.speed must be a Speed, got {self.speed!r} (Speed.parse('fast') makes one)")
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(
                f"TrainConfig needs epochs >= 0, batch_size >= 1, lr > 0 (got {self.epochs}, "
                f"{self.batch_size}, {self.lr})"
            )
        if not isinstance(self.threads, int) or self.threads < 0:
            raise ConfigError(f"TrainConfig.threads must be an integer >= 0 (0: torch's setting), got {self.threads!r}")
        if self.schedule not in ("step", "onecycle", "constant"):
            raise ConfigError(f"schedule must be 'step', 'onecycle' or 'constant', got {self.schedule!r}")

    def hashed_fields(self) -> dict[str, Any]:
        """What the run's hash covers: every field, except ``speed`` when it is the default (fp32 eager) and
        ``threads`` when 0, so runs from before those settings existed keep their hash and their checkpoints."""
        d = asdict(self)
        if self.speed.is_default:
            d.pop("speed")
        if not self.threads:
            d.pop("threads")
        return d

    def lr_at(self, step: int, steps_per_epoch: int) -> float:
        """The learning rate of optimisation step ``step`` (0-based, counted over the whole run)."""
        total = max(1, self.epochs * steps_per_epoch)
        if self.schedule == "constant":
            return self.lr
        if self.schedule == "onecycle":
            warm = max(1, int(0.2 * total))
            if step < warm:
                return self.lr * (0.1 + 0.9 * step / warm)
            return self.lr * max(0.0, (total - step) / max(1, total - warm))
        epoch = step / steps_per_epoch
        marks = [m * self.epochs if m < 1 else m for m in self.milestones]
        return self.lr * self.lr_gamma ** sum(epoch >= m for m in marks)


def multi_exit_loss(
    outputs: list[torch.Tensor], y: torch.Tensor, weights: tuple[float, ...] | None = None
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Σ_k γ_k · CE(outputs[k], y); returns (total, per-exit CE)."""
    per_exit = [F.cross_entropy(o.float(), y) for o in outputs]
    w = weights or (1.0,) * len(outputs)
    if len(w) != len(outputs):
        raise ConfigError(f"exit_weights has {len(w)} entries for a model with {len(outputs)} exits")
    return sum(wk * lk for wk, lk in zip(w, per_exit)), per_exit


LossFn = Callable[[list[torch.Tensor], torch.Tensor, torch.Tensor], tuple[torch.Tensor, list[torch.Tensor]]]


def _dist() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun with several processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _all_reduce(t: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


def build_model(spec: dict[str, Any], init_seed: int) -> MultiExit:
    """Build a registered model with its weights drawn from ``init_seed`` alone."""
    seed_everything(init_seed)
    return model_from_spec(spec)


@torch.no_grad()
def predict(
    model: nn.Module,
    ds: ImageSet,
    *,
    batch_size: int = 512,
    device: torch.device | None = None,
    amp: bool = False,
    progress: bool = False,
    speed: Speed = Speed(),
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits of every exit for every sample, in eval mode, without augmentation.

    ``speed`` other than the default runs a prepared copy (:func:`~overthink_lib.speed.for_inference`); the
    logits then differ from fp32 eager by rounding (bf16: ~1e-2 relative), so records keep the default.

    Returns:
        (logits ``[N, E, C]`` float32 on CPU, labels ``[N]``, dataset indices ``[N]``).
    """
    from tqdm.auto import tqdm

    device = device or next(model.parameters()).device
    speed = speed.resolve(device=device)
    was_training = model.training
    model.eval()
    net = for_inference(model, speed)
    outs = []
    try:
        it = iterate(ds, batch_size, device=device)
        for x, _, _ in tqdm(
            it, total=math.ceil(len(ds) / batch_size), disable=not progress, desc="predict", leave=False
        ):
            with speed.autocast(device, amp):
                logits = net(speed.batch(x))
            outs.append(torch.stack([o.float() for o in logits], 1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(outs), ds.labels.clone(), ds.indices.clone()


def evaluate(
    model: nn.Module,
    ds: ImageSet,
    *,
    batch_size: int = 512,
    device: torch.device | None = None,
    amp: bool = False,
    speed: Speed = Speed(),
) -> dict[str, list[float]]:
    """Per-exit cross-entropy and accuracy on ``ds`` (eval mode, no augmentation)."""
    logits, labels, _ = predict(model, ds, batch_size=batch_size, device=device, amp=amp, speed=speed)
    return _scores(logits, labels)


def _scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, list[float]]:
    loss = [F.cross_entropy(logits[:, k], labels).item() for k in range(logits.shape[1])]
    acc = (logits.argmax(-1) == labels[:, None]).float().mean(0).tolist()
    return {"loss": loss, "acc": acc}


def _prediction_key(ds: ImageSet, weights: str, batch_size: int, device: torch.device) -> dict[str, Any]:
    # everything the logits depend on besides the code: the weights, the samples, the batch size, the device kind
    return {
        "weights": weights,
        "data": ds.provenance(),
        "batch_size": int(batch_size),
        "device": torch.device(device).type,
        "record_version": COMPUTE_VERSIONS["record"],
    }


def prediction_path(folder: Path, ds: ImageSet, weights: str) -> Path:
    """Where :func:`save_predictions` keeps the logits of weights ``weights`` on ``ds`` in ``folder``."""
    return Path(folder) / f"{ds.split}-{weights}.pt"


def save_predictions(
    folder: Path,
    ds: ImageSet,
    weights: str,
    batch_size: int,
    device: torch.device,
    logits: torch.Tensor,
    labels: torch.Tensor,
    indices: torch.Tensor,
) -> Path:
    """Keep fp32-eager logits of :func:`predict` (weights hash ``weights``, ``batch_size``, on ``device``) for
    :func:`load_predictions`; written atomically."""
    path = prediction_path(folder, ds, weights)
    atomic_torch_save(
        {
            **_prediction_key(ds, weights, batch_size, device),
            "logits": logits,
            "labels": labels,
            "indices": indices,
            "code_version": code_version(),
        },
        path,
    )
    return path


def load_predictions(
    folder: Path, ds: ImageSet, weights: str, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The (logits, labels, indices) that :func:`predict` gives for weights ``weights`` on ``ds`` with fp32 eager
    inference, ``batch_size`` and ``device``, when :func:`save_predictions` kept exactly those; else None (also
    for an unreadable file: then the caller just predicts)."""
    path = prediction_path(folder, ds, weights)
    if not path.exists():
        return None
    try:
        saved = safe_torch_load(path, "predictions")
    except ConfigError:
        return None
    key = _prediction_key(ds, weights, batch_size, device)
    if not isinstance(saved, dict) or any(saved.get(k) != v for k, v in key.items()):
        return None
    logits, labels, indices = saved.get("logits"), saved.get("labels"), saved.get("indices")
    if (
        not all(torch.is_tensor(t) for t in (logits, labels, indices))
        or logits.shape[0] != len(ds)
        or not torch.equal(labels, ds.labels)
        or not torch.equal(indices, ds.indices)
    ):
        return None
    return logits, labels, indices


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = np.random.get_state()  # its key array as a tensor: loadable weights-only
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _numpy_array_globals() -> list:
    """What unpickling the numpy RNG state of checkpoints written before it was stored as a tensor needs: numpy's
    array reconstruction and dtypes — data, no code of the file's choosing."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`fit` weights-only: tensors and plain containers, never code the file
    carries. A missing, truncated, corrupt, foreign or code-carrying file → one clear ConfigError."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"no checkpoint at {path}: train first (python -m overthink_lib train ...)")
    # older checkpoints hold numpy's RNG state as an array: allow numpy's array types, nothing else
    ckpt = safe_torch_load(path, "checkpoint", allow=_numpy_array_globals())
    if not isinstance(ckpt, dict) or not {"model_spec", "model", "train_config", "epoch"} <= set(ckpt):
        raise ConfigError(f"{path} is not an overthink checkpoint (missing model_spec/model/train_config/epoch)")
    return ckpt


def model_from_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[MultiExit, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint (weights loaded, eval mode)."""
    ckpt = load_checkpoint(path)
    model = model_from_spec(ckpt["model_spec"])
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise ConfigError(
            f"checkpoint {path} does not fit model {ckpt['model_spec']['name']}: {str(err).splitlines()[0]}"
        ) from None
    return model.to(device).eval(), ckpt


def state_hash(model: nn.Module) -> str:
    """A content hash of the model's weights and buffers: the cache key of everything derived from it."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(history[0]))
    w.writeheader()
    w.writerows(history)
    atomic_write_bytes(path, buf.getvalue().encode())


def resolve_speed(
    cfg: TrainConfig, model: nn.Module, train_ds: ImageSet, device: torch.device | None = None
) -> TrainConfig:
    """``cfg`` with a ``Speed(auto=True)`` request turned into the settings that pay on this machine for this run
    (:meth:`~overthink_lib.speed.Speed.resolve`): the run's eager length is estimated by timing two training steps
    of a copy of ``model`` on a batch shaped like ``train_ds``'s. Other configs are returned unchanged."""
    if not cfg.speed.auto:
        return cfg
    device = device or next(model.parameters()).device
    steps = cfg.epochs * math.ceil(len(train_ds) / cfg.batch_size)
    x = torch.zeros(min(cfg.batch_size, len(train_ds)), *train_ds.images.shape[1:], device=device)
    seconds = estimate_train_seconds(model, x, steps) if steps else 0.0
    return replace(cfg, speed=cfg.speed.resolve(run_seconds=seconds, device=device))


PROGRESS_EVERY_S = 60.0  # headless status lines while an epoch runs
HEADLESS_ENV = "OVERTHINK_HEADLESS"  # set by the notebook runner for the kernels it starts


def _mmss(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def train_one_epoch(
    net: nn.Module,
    opt: torch.optim.Optimizer,
    train_ds: ImageSet,
    cfg: TrainConfig,
    epoch: int,
    *,
    n_exits: int,
    loss_fn: LossFn,
    device: torch.device,
    scaler=None,
    rank: int = 0,
    world: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """One epoch of SGD over ``train_ds`` (order and augmentation drawn from ``(cfg.data_seed, epoch)``).

    Returns the epoch's row of the history: ``epoch``, the last ``lr``, and per exit the mean training loss and
    accuracy (summed over every rank under DDP).
    """
    from tqdm.auto import tqdm

    net.train()
    sp = cfg.speed
    steps_per_epoch = math.ceil((len(train_ds) // world) / cfg.batch_size)
    sums = torch.zeros(2 * n_exits + 1, dtype=torch.float64)  # per-exit loss sums, correct counts, samples
    batches = iterate(
        train_ds,
        cfg.batch_size,
        device=device,
        shuffle=True,
        augment=cfg.augment,
        seed=int(np.random.SeedSequence([cfg.data_seed, epoch]).generate_state(1)[0]),
        rank=rank,
        world_size=world,
    )
    headless = os.environ.get(HEADLESS_ENV) == "1"  # under reproduce: nobody sees a bar
    bar = tqdm(
        batches,
        total=steps_per_epoch,
        disable=not progress or rank != 0 or headless,
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        leave=False,
    )
    lr = cfg.lr
    # headless: a status line every PROGRESS_EVERY_S seconds instead of the bar
    status = progress and rank == 0 and headless
    t_start = t_last = time.perf_counter()
    for i, (x, y, idx) in enumerate(bar):
        lr = cfg.lr_at(epoch * steps_per_epoch + i, steps_per_epoch)
        for g in opt.param_groups:
            g["lr"] = lr
        with sp.autocast(device, cfg.amp):
            outs = net(sp.batch(x))
        if sp.bf16:  # the loss in fp32, as CUDA autocast does for cross-entropy
            outs = [o.float() for o in outs]
        loss, per_exit = loss_fn(outs, y, idx)
        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        with torch.no_grad():
            b = len(y)
            sums[:n_exits] += torch.tensor([float(loss) * b for loss in per_exit], dtype=torch.float64)
            sums[n_exits : 2 * n_exits] += torch.stack([(o.argmax(-1) == y).sum() for o in outs]).double().cpu()
            sums[-1] += b
        if i % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.4f}")
        now = time.perf_counter()
        if status and now - t_last >= PROGRESS_EVERY_S and i + 1 < steps_per_epoch:
            t_last, rate = now, (i + 1) / (now - t_start)
            print(
                f"epoch {epoch + 1}/{cfg.epochs}: step {i + 1}/{steps_per_epoch}, loss {loss.item():.3f}, "
                f"{rate * cfg.batch_size:.0f} img/s, epoch ETA {_mmss((steps_per_epoch - i - 1) / rate)}",
                flush=True,
            )
    sums = _all_reduce(sums.to(device), world).cpu()
    row: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
    for k in range(n_exits):
        row[f"train_loss_{k + 1}"] = sums[k].item() / sums[-1].item()
        row[f"train_acc_{k + 1}"] = sums[n_exits + k].item() / sums[-1].item()
    return row


def fit(
    model: MultiExit,
    train_ds: ImageSet,
    val_ds: ImageSet | None,
    cfg: TrainConfig,
    *,
    out_dir: Path,
    resume: bool = False,
    device: torch.device | None = None,
    loss_fn: LossFn | None = None,
    params: list[nn.Parameter] | None = None,
    progress: bool = True,
    extra: dict[str, Any] | None = None,
    stop_after_epoch: int | None = None,
) -> list[dict[str, Any]]:
    """Train ``model`` on ``train_ds`` (on ``cfg.threads`` CPU threads when set and on the CPU); evaluate on ``val_ds`` after every epoch; checkpoint every epoch.

    Args:
        model: a multi-exit model built with ``model.spec`` (see :func:`build_model`).
        cfg: the run's :class:`TrainConfig`.
        out_dir: where ``checkpoint.pt`` and ``metrics.csv`` go.
        resume: continue from ``out_dir/checkpoint.pt`` (it must come from the same model spec, config and data).
        loss_fn: ``(outputs, y, index) -> (loss, per-exit losses)``; default :func:`multi_exit_loss` with γ.
        params: the parameters to optimise (default: all; e.g. only new heads when fine-tuning frozen).
        extra: more provenance to store in the checkpoint (e.g. the parent checkpoint of a fine-tuning run).
        stop_after_epoch: stop (as if killed) after this epoch — for tests of resuming.
    Returns:
        One row per epoch: lr, train loss/accuracy per exit, validation loss/accuracy per exit, seconds.
    """
    device = device or next(model.parameters()).device
    try:
        with cpu_threads(cfg.threads if device.type == "cpu" else 0):
            run = _prepare(model, train_ds, cfg, Path(out_dir), device, params, extra, resume, progress)
            loss_fn = loss_fn or (lambda outs, y, idx: multi_exit_loss(outs, y, run.cfg.exit_weights))
            last = run.cfg.epochs if stop_after_epoch is None else min(run.cfg.epochs, stop_after_epoch)
            for epoch in range(run.start_epoch, last):
                t0 = time.perf_counter()
                row = train_one_epoch(
                    run.net,
                    run.opt,
                    train_ds,
                    run.cfg,
                    epoch,
                    n_exits=model.num_exits,
                    loss_fn=loss_fn,
                    device=device,
                    scaler=run.scaler,
                    rank=run.rank,
                    world=run.world,
                    progress=progress,
                )
                if val_ds is not None and run.rank == 0:
                    row.update(_validate(run, val_ds, keep=epoch + 1 in {last} | run.halfway))
                row["seconds"] = round(time.perf_counter() - t0, 2)
                run.history.append(row)
                if run.rank == 0:
                    _save_epoch(run, epoch + 1)
                    if progress:
                        _epoch_line(run, epoch, row, val_ds is not None)
            return run.history
    finally:  # trained in channels_last or not, the model comes back as a checkpoint loads it (NCHW): what the
        # caller computes from it next (records, CAMs) runs the same kernels as from a cached checkpoint
        model.to(memory_format=torch.contiguous_format)


def _prepare(model, train_ds, cfg, out_dir: Path, device, params, extra, resume: bool, progress: bool):
    """Everything an epoch needs (a namespace): the resolved config, the run's identity (what its checkpoint must
    match to be resumed), the optimiser (restored when resuming), the network to train (DDP, compiled), the
    validation settings, where it writes, and the history so far."""
    from types import SimpleNamespace

    rank, world = _dist()
    model.to(device)
    if cfg.speed.auto:  # "fast": pick what pays on this machine for a run of this length, before anything is hashed
        cfg = resolve_speed(cfg, model, train_ds, device)
    sp = cfg.speed
    _speed_warnings(sp, device, rank)
    if sp.channels_last:
        model.to(memory_format=torch.channels_last)
    run = SimpleNamespace(model=model, cfg=cfg, device=device, rank=rank, world=world, out_dir=out_dir)
    run.identity = {
        "model_spec": model.spec,
        "train_config": cfg.hashed_fields(),
        "train_data": train_ds.provenance(),
        "extra": extra or {},
        "train_version": COMPUTE_VERSIONS["train"],
    }
    run.opt = torch.optim.SGD(
        list(model.parameters()) if params is None else params,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        nesterov=cfg.nesterov,
        **({"fused": True} if sp.fused_sgd else {}),
    )
    run.start_epoch, run.history = _resume(run, out_dir / CHECKPOINT, progress) if resume else (0, [])
    run.net = model
    if world > 1:
        run.net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if sp.compile:
        run.net = torch.compile(run.net)
    # validation after each epoch: the same precision and memory format, BN folded if asked, never compiled anew
    run.eval_speed = Speed(bf16=sp.bf16, channels_last=sp.channels_last, fold_bn=sp.fold_bn)
    use_scaler = cfg.amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()
    run.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
    # fp32 eager validation logits are what a record of the same weights computes: kept for the weights a run ends
    # with (its last epoch, or where ``stop_after_epoch`` stops it) and for the half-way snapshot (1-based epochs)
    run.keep_predictions = run.eval_speed.resolve(device=device).is_default and not cfg.amp
    run.halfway = {cfg.epochs // 2} if cfg.epochs % 2 == 0 else set()
    return run


def _speed_warnings(sp: Speed, device: torch.device, rank: int) -> None:
    if sp.bf16 and device.type == "cpu" and not cpu_has_bf16() and rank == 0:
        warnings.warn(
            "speed.bf16 on a CPU without AMX/AVX-512-bf16: bf16 is emulated there and runs slower than fp32",
            stacklevel=3,
        )
    if sp.channels_last and device.type == "cpu" and not sp.bf16 and rank == 0:
        warnings.warn(
            "fp32 channels_last training on CPU: torch 2.14.1's oneDNN corrupts memory in the input gradient "
            "of some NHWC strided convolutions (benchmarks/onednn_nhwc_bug.py); no preset uses it",
            stacklevel=3,
        )


def _resume(run, ckpt_path: Path, progress: bool) -> tuple[int, list[dict[str, Any]]]:
    """Restore weights, optimiser and RNG from ``ckpt_path`` when it exists (refused when it comes from another
    model, config or data). Returns (epochs done, history)."""
    if not ckpt_path.exists():
        return 0, []
    ckpt = load_checkpoint(ckpt_path)
    mine, theirs = config_hash(run.identity), config_hash({k: ckpt.get(k) for k in run.identity})
    if mine != theirs:
        raise ConfigError(
            f"checkpoint {ckpt_path} comes from another config (hash {theirs} ≠ {mine}); "
            "use another out_dir or resume=False to start over"
        )
    run.model.load_state_dict(ckpt["model"])
    run.opt.load_state_dict(ckpt["optimizer"])
    _set_rng_state(ckpt["rng"])
    if run.rank == 0 and progress:
        print(f"resuming from {ckpt_path} after epoch {ckpt['epoch']}", flush=True)
    return ckpt["epoch"], list(ckpt["history"])


def _validate(run, val_ds: ImageSet, keep: bool) -> dict[str, float]:
    """Validation loss and accuracy per exit (``val_loss_k``, ``val_acc_k``); ``keep``: also keep the logits."""
    cfg, model = run.cfg, run.model
    logits, labels, indices = predict(
        model, val_ds, batch_size=cfg.eval_batch_size, device=run.device, amp=cfg.amp, speed=run.eval_speed
    )
    ev = _scores(logits, labels)
    if run.keep_predictions and keep:
        save_predictions(
            run.out_dir / PREDICTIONS,
            val_ds,
            state_hash(model),
            cfg.eval_batch_size,
            run.device,
            logits,
            labels,
            indices,
        )
    row = {}
    for k in range(model.num_exits):
        row[f"val_loss_{k + 1}"], row[f"val_acc_{k + 1}"] = ev["loss"][k], ev["acc"][k]
    return row


def _save_epoch(run, epoch: int) -> None:
    """The checkpoint after ``epoch`` (1-based; and the half-way snapshot at half of an even schedule), metrics.csv."""
    cfg, weights = run.cfg, run.model.state_dict()
    resumable = {"optimizer": run.opt.state_dict(), "epoch": epoch, "rng": _rng_state()}
    rest = {
        "history": run.history,
        "code_version": code_version(),
        "init_seed": cfg.init_seed,
        "data_seed": cfg.data_seed,
    }
    atomic_torch_save({**run.identity, "model": weights, **resumable, **rest}, run.out_dir / CHECKPOINT)
    if epoch in run.halfway:  # the weights only (no optimiser or RNG state: a snapshot, never resumed)
        atomic_torch_save({**run.identity, "model": weights, "epoch": epoch, **rest}, run.out_dir / HALFWAY)
    _write_metrics(run.out_dir / METRICS, run.history)


def _epoch_line(run, epoch: int, row: dict[str, Any], validated: bool) -> None:
    """``epoch 3/10: 41 s, train loss (last exit) 1.234, val acc per exit 41.0 52.3 ..., ETA 04:47 → checkpoint``."""
    cfg, n_exits = run.cfg, run.model.num_exits
    accs = " ".join(f"{row.get(f'val_acc_{k + 1}', row[f'train_acc_{k + 1}']) * 100:.1f}" for k in range(n_exits))
    left = (cfg.epochs - epoch - 1) * float(np.mean([h["seconds"] for h in run.history[run.start_epoch :]]))
    print(
        f"epoch {epoch + 1}/{cfg.epochs}: {row['seconds']:.0f} s, train loss (last exit) "
        f"{row[f'train_loss_{n_exits}']:.3f}, {'val' if validated else 'train'} acc per exit {accs}, ETA "
        f"{_mmss(left)} → {run.out_dir / CHECKPOINT}",
        flush=True,
    )
