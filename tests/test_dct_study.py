"""Notebook 06's study (analysis/dct_study.py) on hand-made images and records."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_exits_overthinking import make_record

from overthink_lib.analysis import dct, dct_study, overthinking
from overthink_lib.records import ExitRecord


def _images(n: int, noisy: np.ndarray, seed: int = 0) -> np.ndarray:
    """[n, 1, 12, 12] uint8: a flat grey square, or noise where ``noisy`` (cluttered)."""
    rng = np.random.default_rng(seed)
    out = np.full((n, 1, 12, 12), 128, dtype=np.uint8)
    out[noisy] = rng.integers(0, 256, size=(int(noisy.sum()), 1, 12, 12), dtype=np.uint8)
    out[:, :, 4:8, 4:8] = 255  # every image has an object
    return out


def _record(n: int, seed: int = 0) -> ExitRecord:
    g = torch.Generator().manual_seed(seed)
    correct = (torch.rand(n, 3, generator=g) < torch.tensor([0.4, 0.6, 0.8])).tolist()
    return make_record(correct, [[0.9] * 3] * n, [1e6, 2e6, 4e6])


def test_the_study_reports_the_measures_own_numbers():
    test = _record(60)
    images = _images(60, np.arange(60) % 2 == 0)
    s = dct_study.study(test, images, n_boot=100, seed=0)
    assert np.array_equal(s.score, dct.clutter(images))
    first = overthinking.first_correct_exit(test).numpy()
    groups = np.where(first < 0, "none", np.char.add("exit ", (first + 1).astype(str)))
    heads = {k: v for k, v, _, _ in s.headlines}
    assert heads["exit_groups_epsilon_squared"] == pytest.approx(dct.kruskal_test(s.score, groups)["epsilon_squared"])
    assert [k for k, *_ in s.headlines][:4] == [f"epsilon_squared_{dct.reading_key(n)}" for n in dct_study.READINGS]
    assert set(s.groups_table.index) == {
        "first correct exit",
        "first correct exit, some exit right",
        "D_ee label (λ = 5.0)",
    }
    assert list(s.by_exit["subset"]) == ["right", "wrong"] * 3
    assert s.maxmin is None and s.verdicts[-1].startswith("no Max-Min sanity check")


def test_the_sanity_check_passes_when_the_levels_differ_in_clutter_and_fails_when_not():
    test = _record(40)
    images = _images(40, np.arange(40) % 3 == 0)
    levels = np.array(["easy", "hard"] * 40)
    mm_rec = _record(80, seed=1)
    for noisy, verdict in ((levels == "hard", "passes"), (np.arange(80) % 4 < 2, "fails")):
        mm = dict(images=_images(80, noisy, seed=2), levels=levels, record=mm_rec, names=("easy", "hard"), items=(1, 4))
        s = dct_study.study(test, images, n_boot=50, seed=0, maxmin=mm)
        heads = {k: v for k, v, _, _ in s.headlines}
        assert heads["sanity_check_default_reading"] == verdict
        assert list(s.maxmin["levels"].index) == ["easy", "hard"] and len(s.maxmin["by_exit"]) == 3
        assert "easy (1 item)" in s.maxmin["sentence"] and "hard (4 items)" in s.maxmin["sentence"]
