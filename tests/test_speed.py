"""Speed settings: off by default, each equivalent to fp32 eager within its stated tolerance, none mutates the model."""

import os
import warnings

import pytest
import torch

from helpers import random_set, tiny_spec
from overthink_lib.config import ConfigError
from overthink_lib.io import config_hash
from overthink_lib.models import get_model
from overthink_lib.speed import (
    CpuInfo,
    Speed,
    compile_break_even,
    cpu_has_bf16,
    cpu_info,
    fold_batchnorm,
    for_inference,
    parse_cpuinfo,
)
from overthink_lib.train import (
    CHECKPOINT,
    TrainConfig,
    build_model,
    fit,
    load_checkpoint,
    model_from_checkpoint,
    predict,
    state_hash,
)

BASE_FLAGS = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma"
AVX2 = f"processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: {BASE_FLAGS} avx2\n"
ZEN4 = f"processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: {BASE_FLAGS} avx2 avx512f avx512_bf16\n"
AMX = f"processor\t: 0\nmodel name\t: Intel Xeon\nflags\t\t: {BASE_FLAGS} avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"

MODELS = [
    tiny_spec(),
    tiny_spec(in_channels=3, num_classes=5),
    {"name": "sdn_resnet20", "kwargs": {"num_classes": 10, "in_channels": 1, "width": 4}},
    {"name": "policy_resnet", "kwargs": {"num_classes": 5, "in_channels": 1, "width": 4}},
]


def with_bn_statistics(spec, seed=0):
    """A model whose BatchNorms hold non-trivial running statistics and affine parameters (as after training)."""
    model = build_model(spec, seed).train()
    c = spec["kwargs"]["in_channels"]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = 0.5
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.3, 0.3, generator=g)
        for _ in range(3):
            model(torch.randn(32, c, 16, 16, generator=g) * 2 + 0.5)
    return model.eval()


def logits(model, x, speed=Speed()):
    net = for_inference(model, speed)
    with torch.no_grad(), speed.autocast(x.device):
        return torch.stack([o.float() for o in net(speed.batch(x))], 1)


def test_defaults_are_fp32_eager_and_keep_old_run_hashes():
    assert Speed().is_default and TrainConfig(epochs=1).speed == Speed()
    assert Speed().describe() == "fp32 eager" and Speed.fast().describe() != "fp32 eager"
    cfg = TrainConfig(epochs=1)
    assert "speed" not in cfg.hashed_fields()  # so checkpoints from before the setting existed keep their hash
    fast = TrainConfig(epochs=1, speed=Speed.fast(cpu=parse_cpuinfo(AMX)))
    assert fast.hashed_fields()["speed"]["bf16"] and config_hash(fast.hashed_fields()) != config_hash(
        cfg.hashed_fields()
    )
    # a config read back from a checkpoint (speed as a dict) is the same config
    assert TrainConfig(epochs=1, speed=fast.hashed_fields()["speed"]) == fast


def test_parse_and_bad_settings():
    assert Speed.parse("fp32") == Speed() == Speed.parse("")
    assert Speed.parse("fast") == Speed(auto=True) == Speed.parse("auto")
    assert Speed.parse("fast").resolve(cpu=parse_cpuinfo(AMX)) == Speed.fast(cpu=parse_cpuinfo(AMX))
    with pytest.raises(ConfigError, match="give it alone"):
        Speed(auto=True, bf16=True)
    assert Speed.parse("bf16, channels_last") == Speed(bf16=True, channels_last=True)
    with pytest.raises(ConfigError, match="unknown speed setting.*'bf17'"):
        Speed.parse("bf16,bf17")
    with pytest.raises(ConfigError, match="must be True or False"):
        Speed(bf16="yes")
    with pytest.raises(ConfigError, match="TrainConfig.speed must be a Speed"):
        TrainConfig(epochs=1, speed="fast")
    assert isinstance(cpu_has_bf16(), bool)


def test_cpu_flags_are_read_and_kinds_named():
    assert parse_cpuinfo(AVX2).kind == "avx2" and not parse_cpuinfo(AVX2).native_bf16
    assert parse_cpuinfo(ZEN4).kind == "avx512-bf16" and parse_cpuinfo(ZEN4).native_bf16
    assert parse_cpuinfo(AMX).kind == "avx512-amx" and parse_cpuinfo(AMX).model == "Intel Xeon"
    assert parse_cpuinfo("").kind == "other" and not parse_cpuinfo("").native_bf16
    two = (
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\nmodel name\t: Intel Xeon\n\n"
        "processor\t: 1\nvendor_id\t: Other\ncpu family\t: 7\nmodel\t\t: 9\n"
    )
    assert parse_cpuinfo(two).id == "GenuineIntel family 6 model 143"  # the first processor's ("model name" ≠ "model")
    assert parse_cpuinfo(two).model == "Intel Xeon"
    assert parse_cpuinfo("vendor_id: V\nmodel: 3\n\ncpu family: 7\n").id == "V family ? model 3"  # first block only
    assert parse_cpuinfo("").id == "? family ? model ?" and CpuInfo("x", frozenset()).id == "unknown"
    assert cpu_info().native_bf16 == cpu_has_bf16()


def test_fast_turns_bf16_off_without_native_bf16_and_compiles_only_long_runs():
    avx2, amx = parse_cpuinfo(AVX2), parse_cpuinfo(AMX)
    short = Speed.fast(cpu=avx2, run_seconds=60)
    assert not short.bf16 and not short.channels_last and not short.compile  # emulated bf16: 0.09× fp32 there
    assert short.fused_sgd and short.fold_bn
    assert Speed.fast(cpu=amx, run_seconds=60) == Speed(bf16=True, channels_last=True, fused_sgd=True, fold_bn=True)
    for cpu in (avx2, amx, parse_cpuinfo(ZEN4), parse_cpuinfo("")):
        edge = compile_break_even(cpu)
        assert 100 < edge < 5000
        assert (
            not Speed.fast(cpu=cpu, run_seconds=edge * 0.99).compile and Speed.fast(cpu=cpu, run_seconds=edge).compile
        )
        assert not Speed.fast(cpu=cpu).compile  # an unknown run length never pays a compile
    assert compile_break_even(avx2) > compile_break_even(amx)  # slower compile, smaller gain


def test_auto_speed_is_resolved_before_the_run_is_hashed(tmp_path):
    ds = random_set(64)
    cfg = TrainConfig(epochs=1, batch_size=32, speed=Speed.parse("fast"))
    auto = build_model(tiny_spec(), 0)
    fit(auto, ds, None, cfg, out_dir=tmp_path / "auto", progress=False)
    stored = TrainConfig(**load_checkpoint(tmp_path / "auto" / CHECKPOINT)["train_config"])
    assert not stored.speed.auto and stored.speed == Speed.fast()  # a tiny run: no compile, bf16 as the CPU allows
    assert stored.speed.bf16 == cpu_has_bf16()
    # the probe that timed the run touched no generator: the same weights as asking for the resolved settings
    given = build_model(tiny_spec(), 0)
    fit(given, ds, None, stored, out_dir=tmp_path / "given", progress=False)
    assert state_hash(auto) == state_hash(given)
    logits_auto = predict(given, ds, speed=Speed(auto=True))[0]
    torch.testing.assert_close(logits_auto, predict(given, ds, speed=Speed.fast())[0])


@pytest.mark.parametrize("spec", MODELS, ids=lambda s: s["name"] + str(s["kwargs"]["in_channels"]))
def test_batchnorm_folding_is_exact_within_fp32_rounding(spec):
    model = with_bn_statistics(spec)
    before = state_hash(model)
    folded = fold_batchnorm(model)
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    n_left = sum(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert n_bn > 0 and n_left < n_bn  # convs followed by BN were folded (BN after a concatenation cannot be)
    x = torch.randn(8, spec["kwargs"]["in_channels"], 16, 16)
    ref, got = logits(model, x), logits(folded, x)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    assert state_hash(model) == before  # the original is untouched


@pytest.mark.parametrize("spec", MODELS[:3], ids=lambda s: s["name"] + str(s["kwargs"]["in_channels"]))
def test_channels_last_and_bf16_inference_tolerances(spec):
    model = with_bn_statistics(spec)
    x = torch.randn(16, spec["kwargs"]["in_channels"], 16, 16)
    ref = logits(model, x)
    torch.testing.assert_close(logits(model, x, Speed(channels_last=True, fold_bn=True)), ref, rtol=1e-4, atol=1e-5)
    got = logits(model, x, Speed(bf16=True, channels_last=True, fold_bn=True))
    # bf16 keeps 8 bits of mantissa: logits agree to a few per cent of their scale, not to fp32 precision
    err = (got - ref).abs().max() / ref.abs().max()
    assert 0 < err < 0.05, err


def test_inference_settings_leave_the_callers_model_as_it_was():
    model = with_bn_statistics(tiny_spec()).train()
    before = state_hash(model)
    ds = random_set(40, size=16)
    fast_logits, _labels, _ = predict(
        model, ds, batch_size=16, speed=Speed(bf16=True, channels_last=True, fold_bn=True)
    )
    ref, _, _ = predict(model, ds, batch_size=16)
    assert fast_logits.shape == ref.shape == (40, 3, 10) and fast_logits.dtype == torch.float32
    assert model.training and state_hash(model) == before
    assert all(p.is_contiguous() for p in model.parameters())  # not converted to channels_last in place


def test_fused_sgd_trains_to_the_same_weights(tmp_path):
    ds = random_set(64, size=16)
    base = dict(epochs=1, batch_size=16, lr=0.05, schedule="constant")
    a, b = build_model(tiny_spec(), 0), build_model(tiny_spec(), 0)
    fit(a, ds, None, TrainConfig(**base), out_dir=tmp_path / "a", progress=False)
    fit(b, ds, None, TrainConfig(**base, speed=Speed(fused_sgd=True)), out_dir=tmp_path / "b", progress=False)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=n)


def test_channels_last_training_is_deterministic_and_hands_back_an_nchw_model(tmp_path):
    """channels_last training (opt-in; it warns on CPU, see benchmarks/onednn_nhwc_bug.py): the same run twice gives
    the same weights bit for bit, the weights stay within fp32 rounding of NCHW training, and the model comes back
    NCHW, so what is computed from it next equals what a loaded checkpoint gives."""
    ds = random_set(64, size=16)
    base = dict(epochs=1, batch_size=16, lr=0.05, schedule="constant", eval_batch_size=32)
    cl = TrainConfig(**base, speed=Speed.parse("channels_last"))
    runs = []
    for name, cfg in (("a", cl), ("b", cl), ("nchw", TrainConfig(**base))):
        model = build_model(tiny_spec(), 0)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(model, ds, ds, cfg, out_dir=tmp_path / name, progress=False)
        assert any("oneDNN corrupts memory" in str(w.message) for w in caught) == cfg.speed.channels_last
        runs.append(model)
    a, b, nchw = runs
    for (n, p), q, r in zip(a.state_dict().items(), b.state_dict().values(), nchw.state_dict().values()):
        assert torch.equal(p, q), n
        torch.testing.assert_close(p, r, rtol=1e-4, atol=1e-5, msg=n)
    assert all(p.is_contiguous() for p in a.parameters())
    loaded, _ = model_from_checkpoint(tmp_path / "a" / CHECKPOINT)
    assert torch.equal(predict(a.eval(), ds, batch_size=32)[0], predict(loaded, ds, batch_size=32)[0])
    assert config_hash(cl.hashed_fields()) != config_hash(TrainConfig(**base).hashed_fields())


def test_malloc_keeps_freed_memory_by_default_and_changes_no_number():
    """The entry points keep freed memory in the process (glibc); OVERTHINK_MALLOC=default leaves malloc alone; a bad
    value fails in one line; training and inference give the same bits either way (fresh processes)."""
    import platform
    import subprocess
    import sys

    from overthink_lib import malloc
    from overthink_lib.config import ConfigError

    glibc = platform.libc_ver()[0] == "glibc"
    with pytest.raises(ConfigError, match="OVERTHINK_MALLOC='huge' is not one of keep, default"):
        malloc.configure("huge")
    code = (
        "import hashlib, torch, overthink_lib\n"
        "from overthink_lib import malloc\n"
        "malloc.apply_process_settings()\n"
        "from overthink_lib.train import build_model, multi_exit_loss\n"
        "m = build_model({'name': 'msdnet_cifar', 'kwargs': {'num_classes': 10, 'in_channels': 1}}, 0).train()\n"
        "opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)\n"
        "g = torch.Generator().manual_seed(1)\n"
        "for _ in range(2):\n"
        "    x, y = torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g)\n"
        "    loss, _ = multi_exit_loss(list(m(x)), y); opt.zero_grad(); loss.backward(); opt.step()\n"
        "with torch.no_grad():\n"
        "    out = torch.cat(m.eval()(torch.randn(256, 1, 28, 28, generator=g)), 1)\n"
        "h = hashlib.sha256(out.numpy().tobytes())\n"
        "[h.update(t.numpy().tobytes()) for t in m.state_dict().values()]\n"
        "print(malloc.state(), h.hexdigest())\n"
    )
    seen = {}
    for setting in ("keep", "default"):
        env = {**os.environ, "OVERTHINK_MALLOC": setting, "OMP_NUM_THREADS": "1"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        state, digest = out.stdout.split()
        seen[setting] = digest
        assert state == (setting if glibc else "default")
    assert seen["keep"] == seen["default"]
    bad = subprocess.run(
        [sys.executable, "-m", "overthink_lib", "datasets"],
        capture_output=True,
        text=True,
        env={**os.environ, "OVERTHINK_MALLOC": "huge"},
    )
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.strip() == (
        "error: OVERTHINK_MALLOC='huge' is not one of keep, default: unset it (the lab "
        "keeps freed memory, faster) or set it to 'default' (glibc as it is)"
    )


def test_importing_the_library_changes_nothing_in_the_process():
    """`import overthink_lib` (and every module of it) leaves the environment and the allocator as they were; the
    entry point applies the settings, and a user's own value wins."""
    import subprocess
    import sys

    code = (
        "import os, pkgutil, importlib, overthink_lib\n"
        "before = dict(os.environ)\n"
        "for m in pkgutil.walk_packages(overthink_lib.__path__, 'overthink_lib.'):\n"
        "    if m.name != 'overthink_lib.__main__': importlib.import_module(m.name)\n"
        "from overthink_lib import malloc\n"
        "print(dict(os.environ) == before, os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY'), malloc.state())\n"
        "malloc.apply_process_settings()\n"
        "print(os.environ.get('ONEDNN_PRIMITIVE_CACHE_CAPACITY'), malloc.state())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "OVERTHINK_MALLOC")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    import platform

    kept = "keep" if platform.libc_ver()[0] == "glibc" else "default"
    assert out.stdout.split("\n")[:2] == ["True None default", f"65536 {kept}"]
    env["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = "2048"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[1] == f"2048 {kept}"


def test_bf16_training_learns_like_fp32_and_is_recorded(tmp_path):
    """bf16 is a real numeric change (first-step gradients differ by ~15-30 % in norm, cosine ≈ 0.96-0.99 — why it is
    off by default); what it must keep is learning: the learnable task is learnt as well as in fp32."""
    from overthink_lib.data import iterate
    from overthink_lib.train import multi_exit_loss

    ds = random_set(128)
    m = build_model(tiny_spec(), 0).train()
    x, y, _ = next(iter(iterate(ds, 64)))
    grads = []
    for sp in (Speed(), Speed(bf16=True)):
        m.zero_grad()
        with sp.autocast(x.device):
            outs = m(x)
        multi_exit_loss([o.float() for o in outs], y)[0].backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    cos = torch.nn.functional.cosine_similarity(*grads, dim=0)
    assert 0.9 < cos < 0.99999, cos
    base = dict(epochs=16, batch_size=16, lr=0.05, schedule="constant", augment=False)
    sp = Speed(bf16=True, channels_last=True, fused_sgd=True, fold_bn=True)
    ha = fit(build_model(tiny_spec(), 0), ds, ds, TrainConfig(**base), out_dir=tmp_path / "a", progress=False)
    hb = fit(build_model(tiny_spec(), 0), ds, ds, TrainConfig(**base, speed=sp), out_dir=tmp_path / "b", progress=False)
    ckpt = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    assert ckpt["train_config"]["speed"] == {**Speed().__dict__, **sp.__dict__}
    # measured: bf16 sits longer on a loss plateau of this tiny task (val 0.59 vs 1.0 after 10 epochs), then
    # catches up (0.98 after 14); on the real model the accuracy check (benchmarks/speed.py) finds no difference
    assert hb[-1]["train_loss_3"] < 0.5 * hb[0]["train_loss_3"]
    assert ha[-1]["val_acc_3"] > 0.9 and hb[-1]["val_acc_3"] > 0.9  # chance is 0.1


def test_compile_matches_eager_in_training_and_inference(tmp_path):
    """torch.compile (inductor, CPU): the same weights after a few steps within fp32 reassociation noise."""
    ds = random_set(32, size=16)
    base = dict(epochs=1, batch_size=16, lr=0.05, schedule="constant", augment=False)
    spec = tiny_spec(n_blocks=2)
    a, b = build_model(spec, 0), build_model(spec, 0)
    fit(a, ds, None, TrainConfig(**base), out_dir=tmp_path / "a", progress=False)
    fit(b, ds, None, TrainConfig(**base, speed=Speed(compile=True)), out_dir=tmp_path / "b", progress=False)
    for (n, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=n)
    x = torch.randn(8, 1, 16, 16)
    torch.testing.assert_close(logits(a, x, Speed(compile=True)), logits(a, x), rtol=1e-4, atol=1e-5)


def test_fast_msdnet_cifar_forward_runs_at_full_size():
    """The benchmarked configuration itself (32×32×3, 100 classes) under every eager fast setting."""
    model = with_bn_statistics({"name": "msdnet_cifar", "kwargs": {"num_classes": 100, "in_channels": 3}})
    x = torch.randn(4, 3, 32, 32)
    ref = logits(model, x)
    got = logits(model, x, Speed(bf16=True, channels_last=True, fold_bn=True))
    assert got.shape == ref.shape == (4, 5, 100)
    assert (got - ref).abs().max() / ref.abs().max() < 0.05
    assert get_model("msdnet_cifar", num_classes=100).num_exits == 5


def test_t_interval_over_runs():
    from overthink_lib.analysis.stats import t_interval

    m, lo, hi = t_interval([1.0, 2.0, 3.0])
    # mean 2, sd 1, se 1/√3, t(0.975, 2) = 4.3027
    assert m == 2.0 and abs(hi - 2.0 - 4.302653 / 3**0.5) < 1e-5 and abs((m - lo) - (hi - m)) < 1e-12
    with pytest.raises(ConfigError, match="at least two finite values"):
        t_interval([1.0])
