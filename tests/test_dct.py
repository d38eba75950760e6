"""DCT clutter: planted images with known answers, ordering, invariance, and the group tests."""
import numpy as np
import pytest

from overthink_lib import dct
from overthink_lib.config import ConfigError


def test_constant_image_needs_one_coefficient():
    img = np.full((2, 1, 16, 16), 100.0)
    assert dct.clutter(img).tolist() == [1 / 256, 1 / 256]
    assert dct.clutter(np.zeros((1, 3, 8, 8)), colour="channel")[0] == 1 / 64


def test_white_noise_needs_most():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(20, 1, 32, 32))
    s = dct.clutter(noise)
    assert s.min() > 0.9
    smooth = np.cumsum(np.cumsum(noise, -1), -2)  # integrated noise: energy at low frequencies
    assert dct.clutter(smooth).max() < s.min()


def test_invariant_to_brightness_scaling():
    rng = np.random.default_rng(1)
    img = rng.random((5, 3, 16, 16))
    for order in dct.ORDERS:
        for colour in dct.COLOURS:
            a = dct.clutter(img, order=order, colour=colour)
            assert np.allclose(a, dct.clutter(7.5 * img, order=order, colour=colour))


def test_orders_run_low_to_high():
    z = dct.frequency_order(4, 4, "zigzag")
    assert z[:6].tolist() == [0, 1, 4, 8, 5, 2]  # (0,0) (0,1) (1,0) (2,0) (1,1) (0,2): JPEG's zig-zag
    r = dct.frequency_order(8, 8, "radial")
    radius = np.hypot(*np.unravel_index(r, (8, 8)))
    assert np.all(np.diff(radius) >= 0)
    assert sorted(z.tolist()) == list(range(16)) and sorted(r.tolist()) == list(range(64))
    # a single high-frequency cosine needs (almost) all the coefficients before it in the order
    coef = np.zeros((1, 1, 8, 8))
    coef[0, 0, 7, 7] = 1.0
    from scipy import fft
    img = fft.idctn(coef, axes=(-2, -1), norm="ortho")
    assert dct.clutter(img)[0] == 1.0 and dct.clutter(img, order="radial")[0] == 1.0


def test_orthonormal_transform_keeps_energy():
    rng = np.random.default_rng(2)
    img = rng.random((3, 1, 10, 12))
    assert np.allclose((dct.dct2(img) ** 2).sum((1, 2, 3)), (img ** 2).sum((1, 2, 3)))


def test_group_tests_flag_planted_difference_not_null():
    rng = np.random.default_rng(3)
    groups = np.repeat([0, 1, 2], 300)
    null = rng.normal(size=900)
    planted = null + 0.6 * groups
    assert dct.kruskal_test(null, groups)["p"] > 0.01
    res = dct.kruskal_test(planted, groups)
    assert res["p"] < 1e-6 and res["epsilon_squared"] > 0.1
    assert dct.permutation_test(null, groups, n_perm=300)["p"] > 0.01
    assert dct.permutation_test(planted, groups, n_perm=300)["p"] < 0.01
    summary = dct.group_summary(planted, groups)
    assert list(summary.index) == [0, 1, 2] and summary["mean"].is_monotonic_increasing


def test_bad_input():
    with pytest.raises(ConfigError, match="threshold must be in"):
        dct.clutter(np.zeros((1, 1, 4, 4)), threshold=0)
    with pytest.raises(ConfigError, match="unknown DCT order"):
        dct.clutter(np.zeros((1, 1, 4, 4)), order="hilbert")
    with pytest.raises(ConfigError, match=r"must be \[N, C, H, W\]"):
        dct.clutter(np.zeros((4, 4)))
    with pytest.raises(ConfigError, match="at least two"):
        dct.kruskal_test([1, 2, 3], [0, 0, 0])
