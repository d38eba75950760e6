"""The analysis regression: every notebook's statistics on frozen records, the same numbers on every machine.

Trained numbers differ between CPU kinds (another kernel sums in another order, and training amplifies the last bit),
so they can be compared exactly only where the kernels are the same (``tests/reference/smoke.json``). What the lab
computes *from* a network's outputs must not differ anywhere: this module holds the outputs fixed. The records the
notebooks read in a smoke run (the main MSDNet's validation and test records, Table 3.1's arms and every seed of its
verdict over seeds, the Max-Min network M short and long, 09's runs, the policy networks' outputs and 05's GradCAM
similarities) are frozen in ``tests/fixtures/frozen/`` (≈1 MB, written once by the lab's own smoke training), and
:func:`headline_numbers` computes each notebook's headline numbers from them:

- notebooks 03, 04, 06 and 11 run themselves (papermill, ``record=`` the frozen main records): every number they
  put into ``results.json``, computed by their own cells;
- notebooks 05, 07, 08 and 09, which train or need a model, through the library calls their cells make, with their
  default parameters, on the frozen records and outputs.

``tests/test_analysis_regression.py`` compares them with ``tests/reference/analysis.json``: strings and integers
exactly, floats to 1e-12 (summation order may differ between numpy's SIMD paths). A deliberate change of a statistic
is one command, ``make analysis-reference`` (``python tests/analysis_regression.py --write``), whose diff shows
exactly which numbers moved; ``--freeze`` re-freezes the fixtures from ``runs/smoke`` (after a change of what the
smoke networks are; reuses the smoke runs, trains what is missing).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from overthink_lib.config import ROOT, get_preset
from overthink_lib.io import atomic_write_bytes, safe_name
from overthink_lib.records import ExitRecord

FIXTURES = ROOT / "tests" / "fixtures" / "frozen"
REFERENCE = ROOT / "tests" / "reference" / "analysis.json"
#: Floats may differ by this much (numpy's pairwise sums take another SIMD path on another CPU kind).
FLOAT_TOL = 1e-12
#: The notebooks that analyse the frozen main records themselves (they take ``record``, train nothing with it).
REPLAYED = ("03", "04", "06", "11")
PRESET = "smoke"
ARMS = ("E", "2E", "E + E ISC+OFA")
NETS = {"msdnet": "msdnet_cifar", "sdn": "sdn_resnet20"}


def _save(rec: ExitRecord, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rec.save(path)


def _load(path: Path) -> ExitRecord:
    return ExitRecord.load(path)


def _arm_file(arm: str) -> str:
    return {"E": "E", "2E": "2E", "E + E ISC+OFA": "E_E_ISC_OFA"}[arm] + ".npz"


# ---------------------------------------------------------------------------------------------------------- freezing
def freeze(out: Path = FIXTURES) -> None:
    """Write the fixtures from the smoke preset's runs (reused when ``runs/smoke`` holds them; trained otherwise)."""
    from overthink_lib import cams
    from overthink_lib.analysis import overthinking, policy
    from overthink_lib.experiments.imta import imta_protocol, imta_seed_splits
    from overthink_lib.experiments.main import main_experiment
    from overthink_lib.experiments.maxmin import maxmin_experiment, maxmin_short_and_long
    from overthink_lib.experiments.policy import policy_set, policy_training_set, train_policy
    from overthink_lib.experiments.stochasticity import stochastic_runs
    from overthink_lib.train import predict

    preset = get_preset(PRESET)
    seed = preset.seed
    tmp = Path(tempfile.mkdtemp(prefix=".frozen-", dir=out.parent))
    exp = main_experiment(preset, seed)
    for split, rec in exp.records.items():
        _save(rec, tmp / "main" / f"{split}.npz")
    # 07: the protocol on the preset's data, and each seed of the verdict over seeds from both parents of the E arm
    for arm, recs in imta_protocol(preset, seed, progress=False).records.items():
        _save(recs["test"], tmp / "imta" / "protocol" / _arm_file(arm))
    sub = imta_seed_splits(preset, seed)
    for parent in ("branch", "separate"):
        for i in range(preset.imta.seeds):
            res = imta_protocol(preset, seed + i, splits=sub, progress=False, parent=parent)
            for arm, recs in res.records.items():
                _save(recs["test"], tmp / "imta" / parent / f"seed{seed + i}" / _arm_file(arm))
    # 06 and 08: M, and M short/long
    mmx = maxmin_experiment(preset, seed, progress=False)
    for split, rec in mmx.records.items():
        _save(rec, tmp / "maxmin" / f"{split}.npz")
    for name, rec in maxmin_short_and_long(preset, seed, progress=False).items():
        _save(rec, tmp / "maxmin" / f"length-{safe_name(name.replace(' ', '-'))}.npz")
    # 08: the policies' outputs (logits on D_ee test and, for the exit policy, on every test sample)
    lam_bin = policy.balancing_lambda(exp.records["val"])
    lam_thesis = policy.thesis_binary_lambda(preset.datasets[0])
    settings = {
        "maxmin": (mmx.records, mmx.splits, "score", 5.0),
        "binary": (exp.records, exp.splits, "binary", lam_bin),
        "binary-thesis": (exp.records, exp.splits, "binary", lam_thesis),
    }
    outputs = {}
    for name, (recs, sets, method, lam) in settings.items():
        lab_te = policy.exit_labels(recs["test"], method, lam)
        _, d_tr, source = policy_training_set(recs["val"], sets["val"], method, lam)
        d_te = policy_set(sets["test"], recs["test"], lab_te)
        for shuffle in (False, True):
            m, _, _ = train_policy(preset, d_tr, seed, source=source, shuffle=shuffle, progress=False)
            tag = f"{name}-{'shuffled' if shuffle else 'policy'}"
            outputs[f"{tag}-dee"] = predict(m, d_te, batch_size=preset.training.eval_batch_size)[0][:, 0].numpy()
            if not shuffle:
                outputs[f"{tag}-all"] = predict(m, sets["test"], batch_size=preset.training.eval_batch_size)[0][
                    :, 0
                ].numpy()
    np.savez_compressed(tmp / "policy_logits.npz", **outputs)
    # 05: GradCAM similarity with the previous exit for the statistics' rows and their matched controls
    test, test_set = exp.records["test"], exp.splits["test"]
    groups = overthinking.overthought_and_others(test, 200, seed)
    matches = {by: overthinking.matched_controls(test, groups["overthought"], by=by, seed=seed) for by in BY}
    ctrl = _control_rows(matches)
    sims = {
        name: cams.cam_statistics(cams.cams_for_rows(exp.model, test_set, rows, target="pred").cams)["similarity_prev"]
        for name, rows in (("overthought", groups["overthought"]), ("other", groups["other"]), ("controls", ctrl))
        if len(rows)
    }
    np.savez_compressed(tmp / "gradcam_similarity.npz", **sims)
    # 09: K runs per factor of both networks
    for key, net in NETS.items():
        runs = stochastic_runs(preset, net, seed, progress=False)
        for factor, recs in runs.records.items():
            for k, rec in enumerate(recs):
                _save(rec, tmp / "stochasticity" / key / factor / f"run{k}.npz")
    (tmp / "README.md").write_text(
        "Frozen outputs of the smoke preset's networks (see tests/analysis_regression.py): written by\n"
        "`python tests/analysis_regression.py --freeze`, never by hand. Records are ExitRecord .npz files.\n"
    )
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    print(f"froze the smoke runs' records into {out}")


BY = ("pattern", "count")


def _control_rows(matches: dict[str, dict]) -> np.ndarray:
    """The distinct control rows of 05's matchings (the rows whose heatmaps the notebook computes), sorted."""
    rows = [m["controls"][m["matched"]].ravel() for m in matches.values()]
    return np.unique(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int64)


# --------------------------------------------------------------------------------------------------- the numbers
def headline_numbers(fixtures: Path = FIXTURES, work: Path | None = None) -> dict[str, Any]:
    """Every notebook's headline numbers from the frozen records: ``{"<notebook>.<section>.<metric>": value}``."""
    out: dict[str, Any] = {}
    out.update(_replayed(fixtures, work))
    out.update({f"05.{k}": v for k, v in _gradcam(fixtures).items()})
    out.update({f"07.{k}": v for k, v in _imta(fixtures).items()})
    out.update({f"08.{k}": v for k, v in _policy(fixtures).items()})
    out.update({f"09.{k}": v for k, v in _stochasticity(fixtures).items()})
    from overthink_lib.results import plain

    return {k: plain(v) for k, v in sorted(out.items())}


def _replayed(fixtures: Path, work: Path | None) -> dict[str, Any]:
    """Notebooks 03, 04, 06, 11 on the frozen main records, through the runner (no HTML; their figures go where a
    record run's go, under the preset's figures folder, ``records/main``)."""
    from overthink_lib.suite import run_suite

    own = work is None
    work = Path(tempfile.mkdtemp(prefix="analysis-regression-")) if own else Path(work)
    try:
        run_suite(
            PRESET,
            only=list(REPLAYED),
            params={"record": str(fixtures / "main")},
            out_dir=work,
            progress=False,
            export_html=False,
        )
        res = json.loads((work / "results.json").read_text())
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    from overthink_lib.results import flat

    book = {"budgeted": "03", "overthinking": "04", "dct": "06", "exit_rules": "11", "calibration": "11"}
    return {f"{book.get(name.split('.')[0], '??')}.{name}": value for name, value in flat(res).items()}


def _gradcam(fx: Path) -> dict[str, Any]:
    """05's statistics that read records (its groups, the matched controls) and its similarity differences on the
    frozen heatmap similarities (``cam_target = pred``; the heatmaps themselves need the model)."""
    from overthink_lib.analysis import overthinking

    n_stat, n_boot, seed = 200, 1000, get_preset(PRESET).seed
    test = _load(fx / "main" / "test.npz")
    groups = overthinking.overthought_and_others(test, n_stat, seed)
    ot_rows, other_rows = groups["overthought"], groups["other"]
    matches = {by: overthinking.matched_controls(test, ot_rows, by=by, seed=seed) for by in BY}
    ctrl_rows = _control_rows(matches)
    sims = dict(np.load(fx / "gradcam_similarity.npz"))
    E = test.num_exits
    out: dict[str, Any] = {
        "gradcam.overthought_rows": len(ot_rows),
        "gradcam.other_rows": len(other_rows),
        "gradcam.control_rows": len(ctrl_rows),
    }
    for by, m in matches.items():
        out[f"gradcam.matched_{by}"] = f"{int(m['matched'].sum())} of {len(ot_rows)}"
    cols = {f"exit{e}": [e - 1] for e in range(2, E + 1)}
    cols["mean_exits_2_to_E"] = list(range(1, E))
    for label, c in cols.items():
        ot_v, other_v = sims["overthought"][:, c].mean(1), sims["other"][:, c].mean(1)
        out[f"gradcam.similarity_minus_others_{label}"] = list(
            overthinking.group_minus_group(ot_v, other_v, n_boot=n_boot, seed=seed)
        )
        for by, m in matches.items():
            pos = np.searchsorted(ctrl_rows, np.where(m["matched"][:, None], m["controls"], ctrl_rows[:1]))
            ctrl_v = sims["controls"][pos][:, :, c].mean(2)
            est, lo, hi, _ = overthinking.matched_minus_controls(ot_v, ctrl_v, m["matched"], n_boot=n_boot, seed=seed)
            out[f"gradcam.similarity_minus_matched_{by}_{label}"] = [est, lo, hi]
    return out


def _imta(fx: Path) -> dict[str, Any]:
    """07: its study (analysis.imta_study, as the notebook calls it): Table 3.1 (overthinking per arm, the paired
    ISC+OFA − 2E difference and its verdict), Fig 3.10's rank correlations, and the verdict over seeds from both
    parents of the E arm."""
    from overthink_lib.analysis import imta_study, overthinking

    n_boot, seed = 2000, get_preset(PRESET).seed
    tests = {arm: _load(fx / "imta" / "protocol" / _arm_file(arm)) for arm in ARMS}
    arms = imta_study.arms(tests, 1, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {}
    for arm, s in arms["summaries"].items():
        for metric, r in s.iterrows():
            out[f"imta.{arm}.{metric}"] = [r.value, r.low, r.high]
    heads = {k: v for k, v, _, _ in arms["headlines"]}
    out["imta.isc_ofa_minus_2E"], out["imta.verdict"] = heads["isc_ofa_minus_2E"], heads["verdict"]
    ranks = imta_study.rank_similarity(tests["2E"], tests["E + E ISC+OFA"], n_boot=min(n_boot, 500), seed=seed)
    for rho, arm in zip(ranks["rho"].values(), ("2E", "E + E ISC+OFA"), strict=True):
        out[f"imta.rank_rho_exits12.{arm}"] = list(rho)
    for parent in ("branch", "separate"):
        seeds = sorted((fx / "imta" / parent).iterdir())
        tab = overthinking.arms_over_seeds(
            {int(d.name[4:]): {arm: _load(d / _arm_file(arm)) for arm in ARMS} for d in seeds}
        )
        for r in tab.itertuples():
            out[f"imta.{parent}.seed{r.seed}.{r.arm}.minus_2E"] = [r.minus_2E, r.minus_2E_low, r.minus_2E_high]
        for a, b in (("E + E ISC+OFA", "2E"), ("E + E ISC+OFA", "E"), ("2E", "E")):
            for metric in ("overthought", "final_acc"):
                out[f"imta.{parent}.seed_level.{a} - {b}.{metric}"] = list(
                    imta_study.paired_over_seeds(tab, metric, a, b)
                )
        verdict = {k: v for k, v, _, _ in imta_study.over_seeds({parent: tab}, parent, "all")["headlines"]}
        out[f"imta.{parent}.verdict_over_seeds"] = verdict["verdict_over_seeds"]
    return out


def _policy(fx: Path) -> dict[str, Any]:
    """08: Fig 4.4's gaps, the Max-Min D_ee labels by level, each policy against chance, its shuffled control and the
    class-only baselines (from the frozen policy outputs), the verdicts, the policy as an exit rule."""
    from overthink_lib.analysis import policy
    from overthink_lib.analysis.stats import bootstrap_mean
    from overthink_lib.data.maxmin import LEVELS

    n_boot, lam, seed = 1000, 5.0, get_preset(PRESET).seed
    out: dict[str, Any] = {}
    mm = {s: _load(fx / "maxmin" / f"{s}.npz") for s in ("val", "test")}
    level = mm["test"].extras["level"].numpy()
    hard = mm["test"].correct[level == LEVELS.index("hard")].double()
    easy = mm["test"].correct[level == LEVELS.index("easy")].double()
    out["maxmin.hard_last_minus_first"] = list(bootstrap_mean(hard[:, -1] - hard[:, 0], n_boot=n_boot, seed=seed))
    out["maxmin.easy_exit1_accuracy"] = list(bootstrap_mean(easy[:, 0], n_boot=n_boot, seed=seed))
    out["maxmin.accuracy_by_level"] = policy.accuracy_by_level(mm["test"], LEVELS).to_numpy().ravel().tolist()
    for p in sorted((fx / "maxmin").glob("length-*.npz")):
        rec = _load(p)
        h = rec.correct[rec.extras["level"].numpy() == LEVELS.index("hard")].double()
        out[f"maxmin.{p.stem}.hard_last_minus_first"] = list(
            bootstrap_mean(h[:, -1] - h[:, 0], n_boot=n_boot, seed=seed)
        )
    lab_val = policy.exit_labels(mm["val"], "score", lam)
    lvl_val = mm["val"].extras["level"][lab_val.rows].numpy()
    for k, name in enumerate(LEVELS):
        labels = (lab_val.labels.numpy()[lvl_val == k] + 1).astype(float)
        out[f"maxmin.mean_label_{name}"] = list(bootstrap_mean(labels, n_boot=n_boot, seed=seed))
    dist = policy.label_distribution(mm["val"], "score", [lam, 10.0, 50.0])
    out["maxmin.label_shares"] = dist["share"].tolist()
    logits = dict(np.load(fx / "policy_logits.npz"))
    main = {s: _load(fx / "main" / f"{s}.npz") for s in ("val", "test")}
    lam_bin = policy.balancing_lambda(main["val"])
    lam_thesis = policy.thesis_binary_lambda(main["test"].provenance["dataset"]["name"])
    out["policy.binary_balancing_lambda"] = lam_bin
    out["policy.binary_thesis_lambda"] = lam_thesis
    settings = {
        "maxmin": (mm, "score", lam),
        "binary": (main, "binary", lam_bin),
        "binary-thesis": (main, "binary", lam_thesis),
    }
    for name, (recs, method, lam_v) in settings.items():
        lab_tr = policy.exit_labels(recs["val"], method, lam_v)
        lab_te = policy.exit_labels(recs["test"], method, lam_v)
        res = {}
        for which in ("policy", "shuffled"):
            preds = torch.from_numpy(logits[f"{name}-{which}-dee"]).argmax(-1)
            res[which] = policy.evaluate_policy(
                preds, lab_te.labels, lab_tr.labels, lab_tr.num_labels, n_boot=n_boot, seed=seed
            )
            for metric in ("accuracy", "majority_rate", "balanced_accuracy"):
                out[f"policy.{name}.{which}.{metric}"] = list(res[which][metric])
            out[f"policy.{name}.{which}.confusion"] = res[which]["confusion"].ravel().tolist()
        out[f"policy.{name}.verdict"] = policy.verdict(res["policy"], res["shuffled"])
        out[f"policy.{name}.dropped"] = int(lab_tr.dropped)
        exit_policy = policy.as_exit_policy(
            torch.from_numpy(logits[f"{name}-policy-all"]).argmax(-1), recs["test"], method
        )
        out[f"policy.{name}.exit_policy"] = [exit_policy["accuracy"], exit_policy["flops"]]
        if method == "binary":
            out[f"policy.{name}.dropped_middle"] = int(lab_tr.dropped_middle)
            c = policy.class_baseline_comparison(
                recs["val"],
                lab_tr,
                recs["test"],
                lab_te,
                torch.from_numpy(logits[f"{name}-policy-dee"]).argmax(-1),
                n_boot=n_boot,
                seed=seed,
            )
            for by in ("true", "exit1"):
                out[f"policy.{name}.class_baseline_{by}"] = list(c["balanced"][by])
                out[f"policy.{name}.minus_class_baseline_{by}"] = list(c["difference"][by])
                out[f"policy.{name}.beyond_class_verdict_{by}"] = policy.beyond_class_verdict(
                    lam_v, res["policy"]["balanced_accuracy"], c["difference"][by]
                )
    return out


def _stochasticity(fx: Path) -> dict[str, Any]:
    """09: its study (analysis.stochasticity.study, as the notebook calls it) on the frozen runs: agreement of the
    overthought sets over K runs per factor (κ, Jaccard, ρ against a plain and a difficulty-stratified null), per
    network, and SDN − MSDNet's ρ paired over the test samples."""
    from overthink_lib.analysis import stochasticity

    shown = {"msdnet": "MSDNet", "sdn": "SDN ResNet-20"}  # the notebook's names of NETS
    records = {
        shown[key]: {
            factor: [_load(p) for p in sorted((fx / "stochasticity" / key / factor).glob("run*.npz"))]
            for factor in ("init", "data", "both")
        }
        for key in NETS
    }
    st = stochasticity.study(records, n_boot=300, n_perm=100, seed=get_preset(PRESET).seed)
    key_of = {name: key for key, name in shown.items()}
    out: dict[str, Any] = {}
    for row in st.summary.to_dict("records"):
        net, factor = key_of[row.pop("network")], row.pop("factor")
        row.pop("final acc %")
        out.update({f"stochasticity.{net}.{factor}.{metric}": v for metric, v in row.items()})
    out["stochasticity.rho_sdn_minus_msdnet"] = list(st.difference)
    return out


# -------------------------------------------------------------------------------------------------- comparing
def compare(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """One line per number that differs (or is missing, or new): empty when every headline number holds."""
    problems = []
    for name in sorted(set(want) | set(got)):
        if name not in got:
            problems.append(f"{name}: in the reference ({want[name]!r}) but not computed any more")
        elif name not in want:
            problems.append(f"{name}: computed ({got[name]!r}) but not in the reference")
        elif not _same(got[name], want[name]):
            problems.append(f"{name}: {got[name]!r} now, reference {want[name]!r}")
    return problems


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool) or isinstance(a, str) or isinstance(b, str) or a is None or b is None:
        return a == b and type(a) is type(b)
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return abs(float(a) - float(b)) <= FLOAT_TOL


def write_reference(numbers: dict[str, Any], path: Path = REFERENCE) -> None:
    from overthink_lib.config import code_version

    body = {
        "what": "every notebook's headline numbers on the frozen records of tests/fixtures/frozen "
        "(tests/analysis_regression.py); the same on every machine",
        "how": "make analysis-reference (after a deliberate change of a statistic, verdict or rule)",
        "code_version": code_version(),
        "numbers": numbers,
    }
    atomic_write_bytes(path, (json.dumps(body, indent=1, ensure_ascii=False) + "\n").encode())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--freeze", action="store_true", help="re-freeze the fixtures from the smoke preset's runs first")
    ap.add_argument("--write", action="store_true", help="write tests/reference/analysis.json from the fixtures")
    args = ap.parse_args(argv)
    if args.freeze:
        freeze()
    numbers = headline_numbers()
    if args.write:
        write_reference(numbers)
        print(f"wrote {len(numbers)} headline numbers to {REFERENCE}")
        return 0
    problems = compare(numbers, json.loads(REFERENCE.read_text())["numbers"])
    print("\n".join(problems) or f"all {len(numbers)} headline numbers hold")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
