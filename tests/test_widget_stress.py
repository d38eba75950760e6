"""No headless run hangs in a widget cell: 03, 05, 08 and 11 executed by papermill with their widgets built.

Once, ``reproduce --preset smoke --param seed=3`` hung for good in 03's widget cell (the kernel idle, papermill waiting
for a reply). The main job no longer builds widgets (``show_widgets=False`` headless), and the explorers no longer
draw through an ``Output`` widget (whose output capture nbclient re-routes); this test takes the riskier path anyway —
widgets built with no frontend — over several seeds, each cell under a short timeout, and counts hangs.

``python tests/test_widget_stress.py --rounds 20`` runs a longer stress (``make stress``).
"""

from __future__ import annotations

import argparse
import sys
import time

from overthink_lib.config import ROOT
from overthink_lib.suite import NotebookFailed, run_suite

WIDGET_NOTEBOOKS = ["03", "05", "08", "11"]
CELL_TIMEOUT_S = 180  # a smoke cell takes seconds; a hang waits forever


def stress(rounds: int, first_seed: int = 0) -> dict:
    runs, hangs, failures = 0, [], []
    t0 = time.perf_counter()
    for seed in range(first_seed, first_seed + rounds):
        for book in WIDGET_NOTEBOOKS:
            runs += 1
            try:
                run_suite(
                    "smoke",
                    only=[book],
                    params={"seed": seed, "show_widgets": True},
                    progress=False,
                    out_dir=ROOT / "runs" / "smoke" / "stress" / f"seed{seed}",
                    cell_timeout=CELL_TIMEOUT_S,
                    export_html=False,
                )
            except NotebookFailed as err:
                (hangs if "cell timeout" in str(err) else failures).append(str(err))
    return {"runs": runs, "hangs": hangs, "failures": failures, "seconds": round(time.perf_counter() - t0, 1)}


def test_widget_notebooks_never_hang_headless():
    # one round on the preset's own seed, whose networks the smoke suite has trained (another seed is a variant that
    # trains its own: minutes a round). The hang was a race in the widget cell, not a property of seed 3, where it
    # showed; `make stress` runs 20 seeds.
    out = stress(rounds=1, first_seed=0)
    assert not out["hangs"] and not out["failures"], out
    print(f"stress: {out['runs']} runs, {len(out['hangs'])} hangs, {out['seconds']} s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0)
    a = ap.parse_args()
    res = stress(a.rounds, a.first_seed)
    print(
        f"stress: {res['runs']} runs of {', '.join(WIDGET_NOTEBOOKS)} with widgets built headless, "
        f"{len(res['hangs'])} hangs, {len(res['failures'])} failures, {res['seconds']} s"
    )
    for line in res["hangs"] + res["failures"]:
        print("  " + line)
    sys.exit(1 if res["hangs"] or res["failures"] else 0)
