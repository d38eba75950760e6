"""Notebook 09's study (analysis/stochasticity.py) on hand-made runs."""

from __future__ import annotations

import numpy as np
import torch
from test_exits_overthinking import make_record

from overthink_lib.analysis import agreement, stochasticity


def _runs(k: int, n: int, same: bool, seed: int) -> dict[str, list]:
    """K records of 3 exits per factor: the same correctness in every run (``same``) or each run its own."""
    g = torch.Generator().manual_seed(seed)
    fixed = (torch.rand(n, 3, generator=g) < 0.6).tolist()
    out = {}
    for factor in ("init", "data", "both"):
        out[factor] = [
            make_record(fixed if same else (torch.rand(n, 3, generator=g) < 0.6).tolist(), [[0.9] * 3] * n, [1, 2, 4])
            for _ in range(k)
        ]
    return out


def test_sample_bound_overthinking_is_called_so_and_the_numbers_are_the_libraries():
    records = {"MSDNet": _runs(3, 120, same=True, seed=0), "SDN ResNet-20": _runs(3, 120, same=False, seed=1)}
    st = stochasticity.study(records, n_boot=50, n_perm=20, seed=0)
    heads = {k: v for k, v, _, _ in st.headlines}
    assert list(heads) == [
        "rho_msdnet",
        "rho_msdnet_stratified_null",
        "rho_msdnet_over_stratified_null",
        "rho_sdn",
        "rho_sdn_stratified_null",
        "rho_sdn_over_stratified_null",
        "rho_sdn_minus_msdnet",
    ]
    ms = st.flags["MSDNet", "both"]
    assert heads["rho_msdnet"][0] == agreement.sample_bound_share(ms) == 1.0  # the same samples in every run
    assert (
        st.sentences[0].startswith("MSDNet: sample-bound share of overthinking rho = 1.00")
        and "mostly sample-bound" in st.sentences[0]
    )
    sdn = st.flags["SDN ResNet-20", "both"]
    assert heads["rho_sdn_minus_msdnet"][0] == agreement.sample_bound_share(sdn) - 1.0
    assert st.sentences[-1].endswith("MSDNet overthinking is more sample-bound.")
    assert np.allclose(st.per_exit.loc["MSDNet"].to_numpy(), 1.0)  # identical runs agree perfectly everywhere
    assert list(st.summary.columns[:3]) == ["network", "factor", "final acc %"] and set(stochasticity.SHOWN) <= set(
        st.summary
    )
