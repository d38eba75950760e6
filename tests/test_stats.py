"""Statistics helpers the verdicts rest on: seeds an equivalence claim needs."""

import numpy as np
import pytest

from overthink_lib.config import ConfigError


def test_tost_seed_count_counts_power_not_only_the_half_width():
    from scipy.stats import t

    from overthink_lib.analysis.stats import tost_seeds

    n = tost_seeds(0.94, 1.0)  # docs/performance.md: the paired SD of the speed check, a ±1 point margin
    assert n == 8
    assert (t.ppf(0.95, n - 1) + t.ppf(0.8, n - 1)) * 0.94 / np.sqrt(n) <= 1.0
    assert (t.ppf(0.95, n - 2) + t.ppf(0.8, n - 2)) * 0.94 / np.sqrt(n - 1) > 1.0  # the smallest such n
    assert tost_seeds(0.94, 0.5) == 24
    assert tost_seeds(0.94, 1.0, power=0.51) < n  # a half-width rule (≈50 % power) asks for fewer
    with pytest.raises(ConfigError, match="tost_seeds needs sd > 0"):
        tost_seeds(0.0, 1.0)
