"""The command line: ``python -m overthink_lib {reproduce,reference,fetch,datasets,train,record,import-record,import-checkpoint} ...``.

Bad input (unknown preset, dataset, parameter; missing offline data) ends with one ``error:`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .config import PRESETS, ConfigError, get_preset


def _cmd_reproduce(args: argparse.Namespace) -> None:
    from .suite import parse_param, run_suite

    params = dict(parse_param(p) for p in args.param)
    datasets = [d.strip() for d in args.datasets.split(",") if d.strip()] if args.datasets else None
    slurm = None
    if args.executor == "slurm":
        from .jobs.slurm import parse_slurm_args, parse_time, resources

        res = resources(get_preset(args.preset), args.gpus_per_job, args.cpus_per_job)
        slurm = dict(
            partition=args.partition,
            time_min=parse_time(args.time) if args.time else None,
            gpus=res["gpus"],
            cpus=res["cpus"],
            extra=parse_slurm_args(args.slurm_args),
            requeue=args.requeue,
        )
    elif (
        args.partition
        or args.slurm_args
        or args.requeue
        or args.time
        or args.gpus_per_job is not None
        or args.cpus_per_job is not None
    ):
        raise ConfigError(
            "--partition, --gpus-per-job, --cpus-per-job, --time, --slurm-args and --requeue go with --executor slurm"
        )
    run_suite(
        args.preset,
        only=args.only or None,
        params=params,
        progress=not args.quiet,
        export_html=not args.no_html,
        datasets=datasets,
        executor=args.executor,
        slurm=slurm,
        dry_run=args.dry_run,
    )


def _cmd_reference(args: argparse.Namespace) -> None:
    """runs/<preset>/results.json → the committed regression reference: a new one, or one more kernel kind."""
    import json

    from .config import ROOT, get_preset
    from .results import add_kind, compare, recorded_kind, write_reference

    src = get_preset(args.preset).run_dir / "results.json"
    if not src.exists():
        raise ConfigError(f"no {src}: run `python -m overthink_lib reproduce --preset {args.preset}` first")
    res = json.loads(src.read_text())
    if res.get("timings", {}).get("notebook_seconds") and len(res["timings"]["notebook_seconds"]) < 2:
        raise ConfigError(
            f"{src} comes from a partial run ({', '.join(res['timings']['notebook_seconds'])}): run the "
            "whole suite before making it the reference"
        )
    path = Path(args.out) if args.out else ROOT / "tests" / "reference" / f"{args.preset}.json"
    old = json.loads(path.read_text()) if path.exists() else None
    if args.add_kind:
        if old is None:
            raise ConfigError(f"no {path} to add a kernel kind to: make the reference first (make reference)")
        ref = add_kind(res, path, label=args.label)
        print(f"recorded {ref['kinds'][-1]['label']} in {path}: {len(ref['kinds'])} kernel kind(s) exact there")
        return
    changed = compare(res, old) if old is not None and recorded_kind(res, old) is not None else []
    ref = write_reference(res, path, label=args.label)
    dropped = len(old.get("kinds", [])) - 1 if old is not None else 0
    print(
        f"wrote {path}: {len(ref['metrics'])} metrics from {src}, exact on {ref['kinds'][0]['label']}"
        + (f"; {dropped} other kind(s) dropped (their numbers belong to the old code)" if dropped > 0 else "")
        + (f"; changed here: {len(changed)}\n  " + "\n  ".join(changed) if changed else "")
    )


def _cmd_fetch(args: argparse.Namespace) -> None:
    from .data import get_dataset

    for name in args.names:
        for split in ("train", "test"):
            ds = get_dataset(name, split, download=True, **({"svhn_extra": True} if name == "svhn" else {}))
            print(f"{name}/{split}: {len(ds)} images {tuple(ds.images.shape[1:])}")


def _cmd_datasets(args: argparse.Namespace) -> None:
    from .data import list_datasets

    print("\n".join(list_datasets()))


def _cmd_train(args: argparse.Namespace) -> None:
    from .experiments.main import train_main_model

    train_main_model(args.preset, dataset=args.dataset, epochs=args.epochs, resume=args.resume, speed=args.speed)


def _cmd_job(args: argparse.Namespace) -> None:
    from .jobs import JobSpec, run_job
    from .jobs.worker import die_with_parent

    die_with_parent()
    spec = JobSpec.read(Path(args.spec)) if args.spec else JobSpec(get_preset(args.preset), {})
    run_job(spec, args.dataset or spec.preset.datasets[0], args.name, args.item)


def _cmd_record(args: argparse.Namespace) -> None:
    from .experiments.main import main_records

    for split, rec in main_records(args.preset, dataset=args.dataset, epochs=args.epochs).items():
        print(f"{split}: {rec.summary()}")


def _cmd_import_record(args: argparse.Namespace) -> None:
    """Logits computed elsewhere (any framework) → an ExitRecord file the notebooks read."""
    import zipfile

    import numpy as np

    from .records import ExitRecord

    if Path(args.source).suffix in (".pth", ".pt", ".tar"):
        _import_official_logits(args)
        return
    if Path(args.source).is_file() and not zipfile.is_zipfile(args.source):
        raise ConfigError(
            f"{args.source} is not an .npz archive: write one with numpy.savez(path, logits=..., labels=...)"
        )
    try:
        with np.load(args.source, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ConfigError(f"no file {args.source}") from None
    except ValueError as err:
        raise ConfigError(f"{args.source} holds pickled objects; write plain arrays with numpy.savez ({err})") from None
    except Exception as err:
        raise ConfigError(
            f"{args.source} is not a readable .npz archive ({type(err).__name__}): write one with "
            "numpy.savez(path, logits=..., labels=...)"
        ) from None
    for role in ("logits", "labels"):
        key = getattr(args, role)
        if key not in arrays:
            raise ConfigError(
                f"{args.source} has no array {key!r} (it has {', '.join(sorted(arrays)) or 'none'}); "
                f"name it with --{role}"
            )
    flops = None
    if args.flops:
        if args.flops in arrays:
            flops = arrays[args.flops]
        else:
            try:
                flops = [float(v) for v in args.flops.split(",")]
            except ValueError:
                raise ConfigError(
                    f"--flops {args.flops!r} is neither an array of {args.source} nor comma-separated numbers"
                ) from None
    elif "flops" in arrays:
        flops = arrays["flops"]
    prov = {"imported_from": str(args.source)}
    if args.dataset:
        _check_dataset_name(args.dataset, args.split)
        prov["dataset"] = {"name": args.dataset, "split": args.split}
    rec = ExitRecord.from_arrays(
        arrays[args.logits],
        arrays[args.labels],
        flops=flops,
        indices=arrays.get(args.indices),
        model=args.model,
        provenance=prov,
    )
    out = Path(args.out)
    if out.is_dir() or args.out.endswith(("/", "\\")):  # a folder: the record takes its split's name there
        out = out / f"{args.split}.npz"
    elif out.suffix not in ("", ".npz"):
        raise ConfigError(f"record file {out} must end in .npz (or name a folder: then {args.split}.npz goes there)")
    checked = _checked_against_dataset(rec) if args.dataset else ""
    path = rec.save(out)
    print(f"wrote {path}: {rec.summary()}; FLOPs {'given' if rec.flops is not None else 'none'}{checked}")


def _checked_against_dataset(rec) -> str:
    """Refuse a record in another sample order than its named dataset's now, not when its images are first shown."""
    from .experiments.runs import record_images

    name = rec.provenance["dataset"]["name"]
    if record_images(rec, get_preset("cpu")) is not None:
        return "; labels agree with the dataset's at every index"
    return f"; {name} is not on disk here, so its labels were not compared"


def _import_official_logits(args: argparse.Namespace) -> None:
    """``logits_single.pth`` (+ ``flops.pth``) of the official MSDNet code → ``<out>/val.npz`` and ``<out>/test.npz``."""
    from .records import read_official_logits

    out = Path(args.out)
    if out.suffix == ".npz":
        raise ConfigError(f"{args.source} holds a validation and a test record: give a folder for both, not {out}")
    recs = read_official_logits(args.source, args.flops, model=args.model or "official-msdnet")
    if args.dataset:  # the test loader keeps the dataset's order: its positions are the split's indices
        _check_dataset_name(args.dataset, "test")
        recs["test"].provenance["dataset"] = {"name": args.dataset, "split": "test"}
    checked = _checked_against_dataset(recs["test"]) if args.dataset else ""
    for split, rec in recs.items():
        path = rec.save(out / f"{split}.npz")
        top5 = rec.accuracy(5).tolist() if rec.num_classes >= 10 else None
        print(
            f"wrote {path}: {rec.summary()}; FLOPs {'official flops.pth' if rec.flops is not None else 'none'}"
            + (f"; top-5 per exit (%) {' '.join(f'{100 * a:.2f}' for a in top5)}" if top5 else "")
            + (checked if split == "test" else "")
        )


def _check_dataset_name(name: str, split: str) -> None:
    from .data import list_datasets

    if name not in list_datasets() or split not in ("train", "val", "test"):
        raise ConfigError(
            f"--dataset {name!r} --split {split!r}: the dataset must be one of "
            f"{', '.join(list_datasets())} and the split train, val or test"
        )


def _cmd_import_checkpoint(args: argparse.Namespace) -> None:
    """An official MSDNet-PyTorch checkpoint → a lab checkpoint (weights under the lab's names, the model spec)."""
    import json

    from .io import atomic_torch_save
    from .models.official import load_official_msdnet

    config = {}
    for item in args.config or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--config {item!r}: write KEY=VALUE (VALUE as JSON, e.g. bn_factor=[1,2,4,4])")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value
        if isinstance(config[key], list):
            config[key] = tuple(config[key])
    model, info = load_official_msdnet(args.source, config=config or None)
    out = Path(args.out)
    if out.suffix not in (".pt", ".pth"):
        raise ConfigError(f"checkpoint file {out} must end in .pt")
    ckpt = {
        "model_spec": model.spec,
        "model": model.state_dict(),
        "train_config": {"imported_from": info["source"]},
        "epoch": int(info.get("epoch", -1)),
        "history": [],
    }
    atomic_torch_save(ckpt, out)
    params = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {out}: {model.spec['name']} {model.spec['kwargs']}, {params:,} parameters, {info['keys']} tensors"
        + (
            f", {info['filled_num_batches_tracked']} BatchNorm counters set to 0"
            if info["filled_num_batches_tracked"]
            else ""
        )
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m overthink_lib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for add in (
        _add_reproduce,
        _add_reference,
        _add_data_and_training,
        _add_job,
        _add_import_record,
        _add_import_checkpoint,
    ):
        add(sub)
    return p


def _add_reproduce(sub) -> None:
    """``reproduce``: the suite headless, and where its jobs run."""
    r = sub.add_parser("reproduce", help="run every notebook headless (papermill) with a preset")
    r.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)} (default cpu)")
    r.add_argument("--only", action="append", default=[], help="run only notebooks starting with this (repeatable)")
    r.add_argument("--param", action="append", default=[], help="extra notebook parameter name=value (repeatable)")
    r.add_argument("--quiet", action="store_true", help="do not stream what the notebooks print")
    r.add_argument("--no-html", action="store_true", help="skip the HTML export of the executed notebooks")
    r.add_argument(
        "--datasets",
        default="",
        help="comma-separated datasets to run the per-dataset notebooks on (default: every dataset of the preset)",
    )
    c = r.add_argument_group("where the jobs run (README, On a cluster)")
    c.add_argument(
        "--executor",
        choices=("local", "slurm"),
        default="local",
        help="local: worker processes here (default); slurm: every job its own SLURM job (submitit)",
    )
    c.add_argument(
        "--dry-run", action="store_true", help="print the planned jobs, dependencies, resources; run nothing"
    )
    c.add_argument("--partition", default=None, help="SLURM partition (default: the cluster's default)")
    c.add_argument(
        "--gpus-per-job", type=int, default=None, help="GPUs per SLURM job (default: 1 when the preset trains on a GPU)"
    )
    c.add_argument(
        "--cpus-per-job",
        type=int,
        default=None,
        help="CPUs per SLURM job (default: the preset's training threads, or 4)",
    )
    c.add_argument(
        "--time",
        default=None,
        help="SLURM time limit per job, H:MM:SS or D-H:MM:SS (default: twice its estimated GPU hours, at least "
        "1:00:00; on a CPU preset its cell timeout)",
    )
    c.add_argument(
        "--slurm-args", nargs="*", default=[], metavar="K=V", help="further sbatch options, e.g. account=abc qos=normal"
    )
    c.add_argument("--requeue", action="store_true", help="let SLURM requeue a job whose node fails")
    r.set_defaults(func=_cmd_reproduce)


def _add_reference(sub) -> None:
    """``reference``: make a run's results the regression reference."""
    ref = sub.add_parser("reference", help="make runs/<preset>/results.json the regression reference CI checks")
    ref.add_argument("--preset", default="smoke")
    ref.add_argument("--out", default=None, help="default tests/reference/<preset>.json")
    ref.add_argument(
        "--add-kind",
        action="store_true",
        help="add this run (the reference's code, on another kernel kind) to the reference: exact there from now on",
    )
    ref.add_argument("--label", default=None, help="how the kind is named in messages (default: the CPU's name)")
    ref.set_defaults(func=_cmd_reference)


def _add_data_and_training(sub) -> None:
    """``fetch``, ``datasets``, ``train``, ``record``."""
    f = sub.add_parser("fetch", help="download datasets into data/ (needs internet)")
    f.add_argument("names", nargs="+")
    f.set_defaults(func=_cmd_fetch)
    d = sub.add_parser("datasets", help="list the registered datasets")
    d.set_defaults(func=_cmd_datasets)
    for name, func, text in (
        ("train", _cmd_train, "train the preset's MSDNet (checkpoint every epoch)"),
        ("record", _cmd_record, "write the validation and test ExitRecords of the trained model"),
    ):
        t = sub.add_parser(name, help=text)
        t.add_argument("--preset", default="cpu")
        t.add_argument("--dataset", default=None, help="default: the preset's first dataset")
        t.add_argument("--epochs", type=int, default=None, help="default: the preset's")
        if name == "train":
            t.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
            t.add_argument(
                "--speed",
                default=None,
                help="fp32 (exact), fast (what pays on this CPU: bf16 only "
                "where native, compile only past its break-even; see docs/performance.md) or a "
                "comma-separated subset; default: the preset's",
            )
        t.set_defaults(func=func)


def _add_job(sub) -> None:
    """``job``: one job of the suite, in this process (what a worker runs)."""
    j = sub.add_parser("job", help="one of the jobs reproduce runs ahead of the notebooks (see overthink_lib.jobs)")
    j.add_argument("name")
    j.add_argument("--preset", default="cpu")
    j.add_argument(
        "--spec", default=None, help="a job spec (JSON: the resolved preset and parameters); wins over --preset"
    )
    j.add_argument("--dataset", default=None, help="default: the preset's first dataset")
    j.add_argument("--item", default="", help="one run of a loop job (e.g. seed1); default: the whole loop")
    j.set_defaults(func=_cmd_job)


def _add_import_record(sub) -> None:
    """``import-record``: logits computed elsewhere → records."""
    i = sub.add_parser(
        "import-record",
        help="turn logits computed elsewhere (an .npz of arrays, or the official MSDNet logits_single.pth) into records",
    )
    i.add_argument(
        "source",
        help="an .npz with logits [N, E, C] and labels [N] (optional flops [E], indices [N]); or the official code's "
        "logits_single.pth (then OUT is a folder for val.npz and test.npz, and --flops the flops.pth, default the "
        "one beside it)",
    )
    i.add_argument("out", help="the record file to write (.npz), e.g. myrecords/test.npz; a folder: <split>.npz in it")
    i.add_argument("--logits", default="logits", help="name of the logits array (default logits)")
    i.add_argument("--labels", default="labels", help="name of the labels array (default labels)")
    i.add_argument("--indices", default="indices", help="name of the sample-id array, if any (default indices)")
    i.add_argument(
        "--flops",
        default=None,
        help="name of a per-exit FLOPs array, or comma-separated numbers "
        "(default: the array 'flops' when present, else none)",
    )
    i.add_argument("--model", default=None, help="the model's name: validation and test records must share it")
    i.add_argument("--dataset", default=None, help="the registry dataset the samples come from (for images)")
    i.add_argument(
        "--split", default="test", choices=("train", "val", "test"), help="its split (val or test; default test)"
    )
    i.set_defaults(func=_cmd_import_record)


def _add_import_checkpoint(sub) -> None:
    """``import-checkpoint``: an official MSDNet checkpoint → a lab checkpoint."""
    c = sub.add_parser("import-checkpoint", help="an official MSDNet-PyTorch checkpoint → a lab checkpoint (.pt)")
    c.add_argument(
        "source", help="model_best.pth.tar / checkpoint_NNN.pth.tar of the official main.py, or a state_dict"
    )
    c.add_argument("out", help="the lab checkpoint to write (.pt); train.model_from_checkpoint reads it")
    c.add_argument(
        "--config",
        action="append",
        metavar="KEY=VALUE",
        help="an MSDNetConfig field the shapes do not tell (e.g. bn_factor=[1,2,4,4], reduction=0.5); repeatable",
    )
    c.set_defaults(func=_cmd_import_checkpoint)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .malloc import apply_process_settings

        apply_process_settings()
        args.func(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:
        from .jobs import JobFailed
        from .suite import NotebookFailed

        if isinstance(err, (NotebookFailed, JobFailed)):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
