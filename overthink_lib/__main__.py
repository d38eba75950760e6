"""The command line: ``python -m overthink_lib {reproduce,fetch,datasets,train,record} ...``.

Bad input (unknown preset, dataset, parameter; missing offline data) ends with one ``error:`` line and exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from .config import PRESETS, ConfigError


def _cmd_reproduce(args: argparse.Namespace) -> None:
    from .notebooks import parse_param, run_suite

    params = dict(parse_param(p) for p in args.param)
    run_suite(args.preset, only=args.only or None, params=params, progress=not args.quiet)


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
    from .experiment import train_main_model

    train_main_model(args.preset, dataset=args.dataset, epochs=args.epochs, resume=args.resume, speed=args.speed)


def _cmd_record(args: argparse.Namespace) -> None:
    from .experiment import main_records

    for split, rec in main_records(args.preset, dataset=args.dataset, epochs=args.epochs).items():
        print(f"{split}: {rec.summary()}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m overthink_lib", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("reproduce", help="run every notebook headless (papermill) with a preset")
    r.add_argument("--preset", default="cpu", help=f"one of {', '.join(PRESETS)} (default cpu)")
    r.add_argument("--only", action="append", default=[], help="run only notebooks starting with this (repeatable)")
    r.add_argument("--param", action="append", default=[], help="extra notebook parameter name=value (repeatable)")
    r.add_argument("--quiet", action="store_true", help="no per-cell progress bar")
    r.set_defaults(func=_cmd_reproduce)
    f = sub.add_parser("fetch", help="download datasets into data/ (needs internet)")
    f.add_argument("names", nargs="+")
    f.set_defaults(func=_cmd_fetch)
    d = sub.add_parser("datasets", help="list the registered datasets")
    d.set_defaults(func=_cmd_datasets)
    for name, func, text in (("train", _cmd_train, "train the preset's MSDNet (checkpoint every epoch)"),
                             ("record", _cmd_record, "write the validation and test ExitRecords of the trained model")):
        t = sub.add_parser(name, help=text)
        t.add_argument("--preset", default="cpu")
        t.add_argument("--dataset", default=None, help="default: the preset's first dataset")
        t.add_argument("--epochs", type=int, default=None, help="default: the preset's")
        if name == "train":
            t.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
            t.add_argument("--speed", default=None, help="fp32 (exact), fast (bf16 + channels_last + compile + "
                           "fused SGD) or a comma-separated subset; default: the preset's")
        t.set_defaults(func=func)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the runner's own failure type carries its one-line message
        from .notebooks import NotebookFailed

        if isinstance(err, NotebookFailed):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
