"""Training that means something on every machine: a smoke-sized network that learns (tests/learning.py), its
accuracy inside an interval measured over seeds and CPU kinds, and its weights bit for bit where the kernels are
those of a recorded kind. Within one machine, same-seed and resumed trainings are bitwise equal (test_train.py)."""

import json

import learning


def test_a_smoke_sized_network_learns_within_the_measured_interval(record_note):
    ref = json.loads(learning.REFERENCE.read_text())
    lo, hi = ref["interval"]
    assert lo > 0.5, f"the reference interval [{lo:.3f}, {hi:.3f}] does not exclude a network that has not learned"
    got = learning.train(0)
    assert lo <= got["final_accuracy"] <= hi, (
        f"final-exit test accuracy {got['final_accuracy']:.3f} outside [{lo:.3f}, {hi:.3f}], the 99.9 % prediction "
        f"interval of {len(ref['runs'])} measured runs (seeds × CPU kinds, tests/reference/learning.json): training "
        "changed (after a deliberate change: python tests/learning.py --measure on each kind)"
    )
    assert min(got["exit_accuracy"]) > 0.5, f"an exit did not learn: {got['exit_accuracy']}"
    here = learning.kind()
    exact = next((e for e in ref["exact"] if e["kind"] == here), None)
    if exact is None:
        record_note(
            f"learning check: {got['final_accuracy']:.3f} in [{lo:.3f}, {hi:.3f}]; exact trained numbers not "
            "compared on this kind (no measured run has its kernels)"
        )
        return
    assert (got["weights"], got["exit_accuracy"]) == (exact["weights"], exact["exit_accuracy"]), (
        f"same kernels as {exact['label']}, other weights: {got['weights']} vs {exact['weights']}, accuracy "
        f"{got['exit_accuracy']} vs {exact['exit_accuracy']}"
    )
    record_note(
        f"learning check: {got['final_accuracy']:.3f} in [{lo:.3f}, {hi:.3f}], weights exact ({exact['label']})"
    )
