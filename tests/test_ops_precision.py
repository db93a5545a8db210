"""Mixed precision on the CPU: the blocks flagged by ``num_fp16_res`` run in float16 (or bfloat16) with ``conv_clamp``
as on a GPU, once the CPU is added to ``FP16_DEVICE_TYPES`` (only CUDA is listed outside tests).

StyleGAN2, StyleGAN3-T and StyleGAN-XL (a StyleGAN3 descendant) are built from their presets, cut down to a few
layers at 16 px (float16 convolutions on the CPU are slow) with two reduced-precision resolutions, and run through
each implementation of the ops: ``ref``, the C++ kernels (``cpp``, which compute half inputs in float32) and the
Triton kernels (``triton``, native half loads and stores; run by tests/test_triton_ops.py under Triton's
interpreter). The discriminator (StyleGAN2's, also StyleGAN3's) runs with StyleGAN2 only. ``train.precision`` is
checked through the training loop.
"""
from __future__ import annotations


import pytest
import torch

from stylegan_core import ops
from stylegan_core.build import build_model
from stylegan_core.layers import precision
from stylegan_core.ops import _compiled, _dispatch, _triton
from stylegan_core.spec import load_spec
from stylegan_core.training.loop import Trainer

HALF = ["generator.synthesis.num_fp16_res=2", "generator.synthesis.conv_clamp=256", "data.resolution=16"]
MODELS = {
    "sg2": (None, HALF + ["discriminator.num_fp16_res=2", "discriminator.conv_clamp=256",
                          "generator.synthesis.channel_max=16", "discriminator.channel_max=16"]),
    "sg3t": ("stylegan3-t-digits", HALF + ["generator.synthesis.channel_max=8", "generator.synthesis.num_layers=4",
                                           "generator.synthesis.margin_size=2", "generator.synthesis.filter_size=4"]),
    "sgxl": ("stylegan-xl-digits", HALF + ["generator.synthesis.stem.channel_max=8",
                                           "generator.synthesis.stem.num_layers=3", "generator.synthesis.stem.margin_size=2",
                                           "generator.synthesis.stem.filter_size=4",
                                           # its projected discriminator (timm backbones) is not under test here
                                           "discriminator.type=stylegan2.discriminator", "discriminator.channel_max=8"]),
}
IMPLS = [
    pytest.param("ref", id="ref"),
    pytest.param("cpp", id="cpp", marks=pytest.mark.skipif(not _compiled.available(), reason="no stylegan_core._C")),
    pytest.param("triton", id="triton", marks=pytest.mark.skipif(
        not _triton.supports("cpu"), reason="Triton on the CPU needs its interpreter: tests/test_triton_ops.py runs "
                                            "this under TRITON_INTERPRET=1")),
]
#: the reduced-precision result against float32, relative to the image's largest magnitude
TOL = {"fp16": 0.02, "bf16": 0.15}


@pytest.fixture(scope="module")
def models(registry):
    cache = {}

    def get(name):
        if name not in cache:
            spec, extra = MODELS[name]
            torch.manual_seed(0)
            cache[name] = build_model(load_spec(spec, ["metrics=[]"] + extra, registry), registry)
        return cache[name]

    return get


def _dtypes(rec: dict) -> set[str]:
    return {k.split()[1] for per in rec.values() for k in per}


def _labels(G, n: int) -> torch.Tensor:
    c = torch.zeros([n, G.c_dim])
    if G.c_dim:
        c[:, 0] = 1
    return c


def _run(built, mode: str, impl: str, with_d: bool):
    G, D = built.G.eval(), built.D.eval()
    z = torch.randn([2, G.z_dim], generator=torch.Generator().manual_seed(1))
    c = _labels(G, 2)
    with precision.precision(mode), ops.default_impl(impl), _dispatch.recording() as rec:
        img = G(z, c, noise_mode="const")
        logits = D(img, c) if with_d else None
        out = img.square().mean() + (logits.square().mean() if with_d else 0)
        grads = torch.autograd.grad(out, [p for p in G.parameters() if p.requires_grad], allow_unused=True)
    return img, logits, grads, rec


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("name", list(MODELS))
def test_reduced_precision_blocks(name, impl, models, monkeypatch):
    if impl == "triton" and name != "sg3t":
        pytest.skip(reason="under the interpreter a whole network takes minutes: StyleGAN3-T (the fused "
                           "filtered_lrelu, bias_act) stands for the others, whose ops tests/test_triton_ops.py covers "
                           "in float16/bfloat16")
    built = models(name)
    with_d = name == "sg2"
    z = torch.randn([2, built.G.z_dim], generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), ops.default_impl(impl), _dispatch.recording() as rec_cpu:
        cpu_img = built.G.eval()(z, _labels(built.G, 2), noise_mode="const")
    assert _dtypes(rec_cpu) == {"float32"}  # fp16 (the default) on the CPU: float32 throughout
    monkeypatch.setattr(precision, "FP16_DEVICE_TYPES", {"cuda", "cpu"})  # exercise the reduced-precision path here
    ref_img, ref_logits, _, rec32 = _run(built, "fp32", impl, with_d)
    assert _dtypes(rec32) == {"float32"}  # train.precision fp32: nothing in reduced precision
    torch.testing.assert_close(ref_img, cpu_img, atol=0, rtol=0)
    for mode, dtype in (("fp16", "float16"), ("bf16", "bfloat16")):
        img, logits, grads, rec = _run(built, mode, impl, with_d)
        assert dtype in _dtypes(rec) and "float32" in _dtypes(rec), rec  # flagged blocks only
        assert all(impl in v for per in rec.values() for v in per.values())
        assert img.dtype == torch.float32 and bool(torch.isfinite(img).all())
        scale = float(ref_img.detach().abs().max())
        err = float((img - ref_img).detach().abs().max())
        assert err < TOL[mode] * scale, (mode, err)
        if with_d:
            assert logits.dtype == torch.float32
            assert float((logits - ref_logits).detach().abs().max()) < TOL[mode] * float(
                ref_logits.detach().abs().max()) + 0.05
        assert all(g is None or bool(torch.isfinite(g).all()) for g in grads)


def test_conv_clamp_bounds_the_half_blocks(models, monkeypatch):
    """Official conv_clamp: every activation of an fp16 layer is clamped to +-256 * gain, so weights scaled up a
    thousand times still give finite float16 activations (where the float32 path would not clamp at all)."""
    built = models("sg3t")
    monkeypatch.setattr(precision, "FP16_DEVICE_TYPES", {"cuda", "cpu"})
    seen = []
    real = ops.filtered_lrelu

    def spy(x, *a, **kw):
        y = real(x, *a, **kw)
        seen.append((x.dtype, kw.get("clamp"), float(y.detach().abs().max())))
        return y

    monkeypatch.setattr(ops, "filtered_lrelu", spy)
    with torch.no_grad():
        for p in built.G.synthesis.parameters():
            p.mul_(10.0)
        img = built.G(torch.randn([2, built.G.z_dim]), torch.zeros([2, 0]), noise_mode="const")
    half = [(c, m) for dt, c, m in seen if dt == torch.float16]
    assert half and all(c is not None and m <= c * 1.001 for c, m in half), half
    assert bool(torch.isfinite(img).all())


@pytest.mark.train
def test_train_precision_in_the_loop(registry, tmp_path, monkeypatch):
    """train.precision chooses what one training step computes the flagged blocks in (the loop sets it)."""
    monkeypatch.setattr(precision, "FP16_DEVICE_TYPES", {"cuda", "cpu"})
    seen = {}
    for mode in ("bf16", "fp32"):
        spec = load_spec(None, ["metrics=[]", "train.batch_size=4", f"train.precision={mode}"] + MODELS["sg2"][1],
                         registry)
        tr = Trainer(build_model(spec, registry), tmp_path / mode, progress=False, log=lambda s: None)
        with _dispatch.recording() as rec:
            stats = tr.step()
        assert all(torch.isfinite(torch.tensor(v)) for v in stats.values()), stats
        seen[mode] = _dtypes(rec)
    assert seen["bf16"] == {"bfloat16", "float32"} and seen["fp32"] == {"float32"}
    assert precision.current_precision() == "fp16"  # the loop's setting does not outlive the step
