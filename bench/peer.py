"""Our networks against the official NVlabs/stylegan3 code, side by side in one process.

    .venv/bin/python bench/peer.py --official /path/to/stylegan3 [--threads 2] [--repeats 7]
                                   [--sections sg2 sg3 step ops] [--sg2-res 64 128 256] [--sg3-res 64 128]
    .venv/bin/python bench/peer.py --quick [--official PATH]   # correctness only, tiny networks, seconds

``--official`` (or ``$STYLEGAN_OFFICIAL``) is a work tree of https://github.com/NVlabs/stylegan3 (tested at
commit c233a91), imported from where it lies and never copied into this repository. Two of its imports
are missing from current environments, and are stood in for in memory only (``sys.modules``; the tree is
not modified), only when the real module cannot be imported: ``torch_utils/ops/conv2d_gradfix.py`` and
``grid_sample_gradfix.py`` import ``parse_version`` from ``pkg_resources``, which current setuptools no
longer ships (stand-in: ``packaging.version.parse``); ``dnnlib/util.py`` imports ``requests`` for its
downloads (stand-in: a module that raises on any use; nothing here downloads). On CPU tensors the
official ops take their pure-PyTorch reference paths; their CUDA plugins are never built.

What a full run does, in this order:

1. measures the machine's fp32 matrix-multiply rate (median of 2048 x 2048 ``a @ b`` products): the
   roofline each side's GFLOP/s is compared with;
2. per workload, builds the same networks on both sides (the official classes with the constructor
   arguments printed above each table; ours through the plugins' ``build_from_official`` and, for the
   training step, through the public ``load_spec_text`` + ``build_model`` + ``Trainer``), copies the official
   weights into ours (``load_state_dict(strict=True)``: the names are the official ones) and checks that the
   outputs agree within the fixture tests' tolerance (``max|ours - official| <= 1e-4 * max(1, max|official|)``,
   ``tests/nvlabs_nets.py``) and the parameter gradients within ``1e-2`` relative L2 norm over all parameters
   (:func:`check_grads` says why not per tensor). A failed check prints ``CHECK FAILED`` and exits with 1;
3. times the workload alternating official and ours run after run (the order flips every run, so both
   see the same machine load) after one warm-up run each, and prints the medians, the ratio
   official / ours and each side's GFLOP/s: the FLOPs of that side's own run (``torch.utils.flop_counter``'s
   formulas: convolutions and matrix products; elementwise work and our compiled ops' arithmetic are not
   counted, the official reference ops' filter convolutions are) over its median time;
4. ends with the targets of this comparison, each with its measured value and met / NOT met.

Workloads (``--sections``):

* ``sg2``: StyleGAN2 G (``training.networks_stylegan2.Generator``: skip, z/w 512, 8 mapping layers,
  channel_base 16384, channel_max 512, fp32, no clamp), eval mode, ``noise_mode='const'``, batch
  ``--batch``: forward (no_grad) and forward+backward (``(G(z) * dy).sum().backward()``, every parameter);
* ``sg3``: StyleGAN3-T G (channel_base 4096, channel_max 128, 2 mapping layers, 14 layers, fp32, no
  clamp), the same;
* ``step``: whole G + D training steps at ``--step-res`` px, batch ``--step-batch``, in the official
  ``--cfg stylegan2`` configuration (``train.py``: style mixing 0.9, path length 2 every 4 steps on half
  the batch, R1 every 16 steps, ``fused_modconv_default='inference_only'``, ``pl_no_weight_grad``, Adam with
  lazy-regularization-adjusted lr and betas, G_ema; resnet D; fp32; no augmentation). Official:
  ``training.loss.StyleGAN2Loss`` driven by the phase loop of ``training/training_loop.py`` (phases Gmain,
  Greg, Dmain, Dreg at their intervals; gradients flattened and ``nan_to_num``'d before each Adam step;
  G_ema update). Ours: ``Trainer.step()`` on the same networks and weights, built from the spec printed
  above the table. Both draw their real batch from the embedded digits dataset (upscaled, 3 channels).
  Three kinds of step are timed: all four phases (``batch_idx % 16 == 0``), main phases + path length
  (``% 4 == 0``), main phases only; a 16-step cycle's mean is ``(t_all + 3 t_Greg + 12 t_main) / 16``;
* ``ops``: the ops alone, official ``impl='ref'`` against ours (``impl='auto'``), on the shapes of the
  official code's CPU figures.

``--quick`` (what CI runs, via ``tests/test_peer_bench.py``): tiny networks, nothing timed. Our side: the
two formulations of the modulated convolutions (one grouped convolution with per-sample weights, or a
shared-weight convolution between input and output scalings, ``ops.modconv``) agree in outputs and
gradients on StyleGAN2 and StyleGAN3-T generators, FLOPs are counted, and a training step of all four
phases (the other kinds run a subset of them) runs with finite results. With ``--official`` too, the tiny networks are also checked against the official ones.

Not a test: the checks assert, the timings only print. The machine may be shared: the load average is
printed beside every table; read the ratios, not the times.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import importlib.util
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

TOL = 1e-4  # outputs: the fixture tests' tolerance (tests/nvlabs_nets.py TOL)
GRAD_TOL = 1e-2  # parameter gradients, relative L2 over all of them (see check_grads)

SG2_CLASS = "training.networks_stylegan2.Generator"
SG3_CLASS = "training.networks_stylegan3.Generator"


@dataclass(frozen=True)
class Widths:
    """The sizes that differ between the timed networks and the tiny ones of ``--quick``."""
    z_dim: int
    sg2_mapping: int
    sg2_base: int
    sg2_max: int
    sg3_base: int
    sg3_max: int
    sg3_layers: int


FULL = Widths(z_dim=512, sg2_mapping=8, sg2_base=16384, sg2_max=512, sg3_base=4096, sg3_max=128, sg3_layers=14)
TINY = Widths(z_dim=32, sg2_mapping=2, sg2_base=256, sg2_max=32, sg3_base=256, sg3_max=16, sg3_layers=4)


def sg2_kwargs(w: Widths) -> dict[str, Any]:
    return dict(z_dim=w.z_dim, c_dim=0, w_dim=w.z_dim, img_channels=3, mapping_kwargs={"num_layers": w.sg2_mapping},
                channel_base=w.sg2_base, channel_max=w.sg2_max, architecture="skip", num_fp16_res=0, conv_clamp=None)


def sg3_kwargs(w: Widths) -> dict[str, Any]:
    return dict(z_dim=w.z_dim, c_dim=0, w_dim=w.z_dim, img_channels=3, mapping_kwargs={"num_layers": 2},
                channel_base=w.sg3_base, channel_max=w.sg3_max, num_layers=w.sg3_layers, conv_kernel=3,
                use_radial_filters=False, num_fp16_res=0, conv_clamp=None)


def d_kwargs(w: Widths) -> dict[str, Any]:
    return dict(c_dim=0, img_channels=3, channel_base=w.sg2_base, channel_max=w.sg2_max, architecture="resnet",
                num_fp16_res=0, conv_clamp=None)


# The official train.py --cfg stylegan2 settings of the training step (train.py; training_loop.py defaults).
STEP = dict(r1_gamma=0.1, style_mixing_prob=0.9, pl_weight=2.0, pl_batch_shrink=2, pl_decay=0.01,
            G_reg_interval=4, D_reg_interval=16, lr=0.0025, betas=(0.0, 0.99), eps=1e-8, ema_rampup=0.05)
STEP_KINDS = (("all four phases (Gmain Greg Dmain Dreg)", 0), ("main phases + Greg", 4), ("main phases only", 1))


class CheckFailed(AssertionError):
    pass


# -- the official code ---------------------------------------------------------------------------------
def official_tree(path: Optional[str]) -> Optional[Path]:
    """The official work tree named by ``--official`` or ``$STYLEGAN_OFFICIAL`` (None: not given)."""
    path = path or os.environ.get("STYLEGAN_OFFICIAL")
    if not path:
        return None
    p = Path(path).expanduser().resolve()
    if not (p / "training" / "networks_stylegan2.py").is_file() or not (p / "torch_utils").is_dir():
        raise SystemExit(f"{p}: not a work tree of NVlabs/stylegan3 (no training/networks_stylegan2.py); "
                         f"give --official PATH or set STYLEGAN_OFFICIAL")
    return p


def _no_network_module(name: str) -> types.ModuleType:
    """A stand-in for a module the official ``dnnlib/util.py`` imports only to download files (``open_url``):
    any use of it raises, so nothing here can reach the network."""
    mod = types.ModuleType(name)
    mod.__doc__ = f"bench/peer.py's stand-in for {name}: only needed to download files, which this script never does"

    def __getattr__(attr: str):
        if attr.startswith("__"):  # introspection (hasattr(module, '__file__')) sees an ordinary module
            raise AttributeError(attr)
        raise RuntimeError(f"bench/peer.py: {name}.{attr} used; the official code tried to download something")

    mod.__getattr__ = __getattr__
    return mod


def import_official(tree: Path) -> types.SimpleNamespace:
    """Import the official modules from ``tree`` (put first on ``sys.path``), with the in-memory stand-ins
    described in the module docstring where the real modules are missing."""
    try:
        import pkg_resources  # noqa: F401
    except ImportError:
        from packaging.version import parse

        stub = types.ModuleType("pkg_resources")
        stub.__doc__ = "bench/peer.py's stand-in: parse_version = packaging.version.parse"
        stub.parse_version = parse
        sys.modules["pkg_resources"] = stub
    if importlib.util.find_spec("requests") is None:
        sys.modules["requests"] = _no_network_module("requests")
    for name in ("training", "torch_utils", "dnnlib"):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and not str(spec.origin).startswith(str(tree)):
            raise SystemExit(f"a module named {name!r} is already importable from {spec.origin}; it would shadow "
                             f"the official one")
    sys.path.insert(0, str(tree))
    mod = {name: importlib.import_module(name) for name in (
        "training.networks_stylegan2", "training.networks_stylegan3", "training.loss", "torch_utils.misc",
        "torch_utils.ops.upfirdn2d", "torch_utils.ops.bias_act", "torch_utils.ops.filtered_lrelu")}
    return types.SimpleNamespace(sg2=mod["training.networks_stylegan2"], sg3=mod["training.networks_stylegan3"],
                                 loss=mod["training.loss"], misc=mod["torch_utils.misc"],
                                 upfirdn2d=mod["torch_utils.ops.upfirdn2d"], bias_act=mod["torch_utils.ops.bias_act"],
                                 filtered_lrelu=mod["torch_utils.ops.filtered_lrelu"])


def ours_from_official(class_name: str, kwargs: dict[str, Any]) -> torch.nn.Module:
    """Our network for an official class and its constructor arguments (the plugins' importers)."""
    if "stylegan3" in class_name:
        from stylegan_plugins.stylegan3.importer import build_from_official
    else:
        from stylegan_plugins.stylegan2.importer import build_from_official
    return build_from_official(class_name, kwargs)


# -- measuring -----------------------------------------------------------------------------------------
def load() -> str:
    try:
        return "load average %.2f %.2f %.2f" % os.getloadavg()
    except OSError:
        return "load average ?"


#: The sides that run with our large-block CPU cache (``stylegan_core.ops.memory``; ``--cpu-cache``). By
#: default ours only: each side as it ships (the official code runs on torch's own allocator).
CACHE_SIDES = ("ours",)


def cache_setting(side: str):
    """The CPU cache as ``side`` runs: ours on it (kept warm while the other side runs, as in a process of its
    own), the other bypassing it (new blocks from torch's allocator), unless ``--cpu-cache`` says otherwise."""
    from stylegan_core.ops import memory
    return contextlib.nullcontext() if side in CACHE_SIDES else memory.bypassed()


def alternate(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds per call of each function, called in turn (the order flipped every run) after one
    warm-up call each; each side with the CPU cache as :data:`CACHE_SIDES` says."""
    for k, fn in fns.items():
        with cache_setting(k):
            fn()
    keys = list(fns)
    times: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(repeats):
        for k in (keys if r % 2 == 0 else keys[::-1]):
            with cache_setting(k):
                t0 = time.perf_counter()
                fns[k]()
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """fp32 FLOP/s of a square matrix product (the roofline)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times)


def count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of one call of ``fn``, by ``torch.utils.flop_counter``'s per-op formulas.

    A dispatch mode of its own rather than ``FlopCounterMode``: that one tracks modules with backward hooks,
    which PyTorch refuses inside ``autograd.grad`` on a leaf input (the R1 penalty)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                self.total += formula(*args, **kwargs, out_val=out)
            return out

    with Count() as counter:
        fn()
    return float(counter.total)


def check(what: str, got: torch.Tensor, expected: torch.Tensor, tol: float = TOL) -> float:
    """``max|got - expected| / max(1, max|expected|)``; raises CheckFailed above ``tol``."""
    if tuple(got.shape) != tuple(expected.shape):
        raise CheckFailed(f"{what}: shape {tuple(got.shape)} != {tuple(expected.shape)}")
    if not bool(torch.isfinite(got).all()):
        raise CheckFailed(f"{what}: not finite")
    err = (got.detach().double() - expected.detach().double()).abs().max().item() if got.numel() else 0.0
    rel = err / max(1.0, expected.abs().max().item() if expected.numel() else 1.0)
    if not rel <= tol:
        raise CheckFailed(f"{what}: max|ours - official| = {err:.3g}, {rel:.3g} of max(1, max|official|) > {tol:g}")
    return rel


def grads_of(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)).detach().double().clone()
            for n, p in net.named_parameters()}


def check_grads(what: str, got: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    """All parameter gradients, matched by name: ``|g - g_expected| / |g_expected|`` over the concatenation
    of every gradient (L2 norms), asserted <= GRAD_TOL; returns it.

    Not per tensor, and not 1e-4: a float32 gradient through these generators carries the rounding error of
    sums over millions of terms of both signs (demodulation makes every weight's gradient nearly orthogonal
    to the weight). At 128 px, batch 4, the official float32 gradient of
    ``synthesis.b8.conv0.noise_strength`` (one scalar, a sum over every pixel of the batch) is 17 % away
    from the same gradient in float64, and the largest weight gradients 0.9 % of their maximum; the
    gradients as a whole differ from float64 by ~1e-3 in relative L2. The fixture tests
    (``tests/test_stylegan2_fixtures.py``) check every tensor on the fixtures' small networks.
    """
    if set(got) != set(expected):
        raise CheckFailed(f"{what}: parameter names differ: {sorted(set(got) ^ set(expected))[:5]}")
    diff = ref = 0.0
    for name, g in expected.items():
        if tuple(got[name].shape) != tuple(g.shape):
            raise CheckFailed(f"{what} grad {name}: shape {tuple(got[name].shape)} != {tuple(g.shape)}")
        if not bool(torch.isfinite(got[name]).all()):
            raise CheckFailed(f"{what} grad {name}: not finite")
        diff += float((got[name] - g).square().sum())
        ref += float(g.square().sum())
    rel = math.sqrt(diff) / max(math.sqrt(ref), 1e-30)
    if not rel <= GRAD_TOL:
        raise CheckFailed(f"{what}: gradients differ, |ours - official| / |official| = {rel:.3g} > {GRAD_TOL:g}")
    return rel


# -- tables --------------------------------------------------------------------------------------------
def table(header: list[str]) -> None:
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |", flush=True)


def row(cells: list[Any]) -> None:
    print("| " + " | ".join(str(x) for x in cells) + " |", flush=True)


def ms(t: float) -> str:
    return f"{1e3 * t:.0f}" if t >= 0.1 else f"{1e3 * t:.1f}"


def gflops(flops: float, t: float) -> str:
    return f"{flops / t / 1e9:.0f}"


# -- generators ------------------------------------------------------------------------------------------
def generator_inputs(G: torch.nn.Module, batch: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn([batch, G.z_dim], generator=g)
    c = torch.zeros([batch, 0])
    with torch.no_grad():
        dy = torch.randn(G(z, c, noise_mode="const").shape, generator=g)
    return z, c, dy


def generator_workloads(G: torch.nn.Module, z: torch.Tensor, c: torch.Tensor, dy: torch.Tensor):
    """(forward, forward+backward) of a generator, as timed."""
    def fwd():
        with torch.no_grad():
            return G(z, c, noise_mode="const")

    def fwdbwd():
        G.zero_grad(set_to_none=True)
        (G(z, c, noise_mode="const") * dy).sum().backward()

    return fwd, fwdbwd


def output_and_grads(G: torch.nn.Module, z, c, dy) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    G.requires_grad_(True).zero_grad(set_to_none=True)
    y = G(z, c, noise_mode="const")
    (y * dy).sum().backward()
    grads = grads_of(G)
    G.zero_grad(set_to_none=True)
    return y.detach(), grads


def generator_pair(off, class_name: str, kw: dict[str, Any], res: int):
    """The official generator (random init, seed ``res``) and ours with its weights, both in eval mode."""
    torch.manual_seed(res)
    kwargs = dict(kw, img_resolution=res)
    G_off = (off.sg3 if "stylegan3" in class_name else off.sg2).Generator(**kwargs).eval()
    G_our = ours_from_official(class_name, kwargs).eval()
    G_our.load_state_dict(G_off.state_dict(), strict=True)
    return G_off, G_our


def compare_generators(label: str, G_off, G_our, z, c, dy) -> tuple[float, float]:
    y_off, g_off = output_and_grads(G_off, z, c, dy)
    y_our, g_our = output_and_grads(G_our, z, c, dy)
    return check(f"{label} output", y_our, y_off), check_grads(label, g_our, g_off)


def generators_section(title: str, off, class_name: str, kw: dict[str, Any], resolutions: list[int],
                       args, peak: float) -> list[dict[str, Any]]:
    print(f"## {title}: official / ours, batch {args.batch}\n")
    print(f"`{class_name}({', '.join(f'{k}={v!r}' for k, v in kw.items())}, img_resolution=R)`, eval mode, "
          f"noise_mode='const'. fwd: no_grad; fwd+bwd: `(G(z) * dy).sum().backward()` into every parameter. "
          f"Median ms of {args.repeats} alternating runs. GFLOP/s: that side's FLOPs / its median; % of roofline: "
          f"ours against the fp32 matmul rate ({peak / 1e9:.0f} GFLOP/s). Check: output max|ours - official| "
          f"relative to max(1, max|official|) / gradients relative L2.\n")
    print(f"{load()}\n")
    table(["R", "check out / grad", "official fwd ms", "ours fwd ms", "fwd ratio", "fwd GFLOP/s off / ours",
           "ours fwd % of roofline", "official fwd+bwd ms", "ours fwd+bwd ms", "fwd+bwd ratio",
           "fwd+bwd GFLOP/s off / ours"])
    results = []
    for res in resolutions:
        G_off, G_our = generator_pair(off, class_name, kw, res)
        z, c, dy = generator_inputs(G_off, args.batch)
        out_err, grad_err = compare_generators(f"{class_name} {res} px", G_off, G_our, z, c, dy)
        f_off, b_off = generator_workloads(G_off, z, c, dy)
        f_our, b_our = generator_workloads(G_our, z, c, dy)
        fl = {k: count_flops(f) for k, f in (("fwd_off", f_off), ("fwd_our", f_our), ("bwd_off", b_off),
                                             ("bwd_our", b_our))}
        mf = alternate({"official": f_off, "ours": f_our}, args.repeats)
        mb = alternate({"official": b_off, "ours": b_our}, args.repeats)
        r = {"res": res, "fwd": mf["official"] / mf["ours"], "fwdbwd": mb["official"] / mb["ours"],
             "roofline": fl["fwd_our"] / mf["ours"] / peak}
        results.append(r)
        row([res, f"{out_err:.1e} / {grad_err:.1e}", ms(mf["official"]), ms(mf["ours"]), f"**{r['fwd']:.2f}x**",
             f"{gflops(fl['fwd_off'], mf['official'])} / {gflops(fl['fwd_our'], mf['ours'])}",
             f"{100 * r['roofline']:.0f}%", ms(mb["official"]), ms(mb["ours"]), f"**{r['fwdbwd']:.2f}x**",
             f"{gflops(fl['bwd_off'], mb['official'])} / {gflops(fl['bwd_our'], mb['ours'])}"])
        del G_off, G_our
    print(f"\n{load()}\n")
    return results


# -- training step ------------------------------------------------------------------------------------------
def step_spec(res: int, batch: int, w: Widths = FULL) -> str:
    s = STEP
    return f"""\
spec_version: 1
name: peer-sg2-step
description: bench/peer.py's StyleGAN2 training step (official --cfg stylegan2 settings, fp32, no augmentation).
generator:
  mapping: {{type: stylegan2.mapping, z_dim: {w.z_dim}, num_layers: {w.sg2_mapping}, lr_multiplier: 0.01}}
  synthesis: {{type: stylegan2.synthesis, w_dim: {w.z_dim}, channel_base: {w.sg2_base}, channel_max: {w.sg2_max},
              architecture: skip, num_fp16_res: 0, conv_clamp: null, fused_modconv_default: inference_only}}
discriminator: {{type: stylegan2.discriminator, architecture: resnet, channel_base: {w.sg2_base},
                channel_max: {w.sg2_max}, num_fp16_res: 0, conv_clamp: null, mbstd_group_size: 4}}
loss: {{type: stylegan2.logistic}}
regularizers:
  - {{type: stylegan2.r1, gamma: {s['r1_gamma']}, interval: {s['D_reg_interval']}}}
  - {{type: stylegan2.style_mixing, prob: {s['style_mixing_prob']}}}
  - {{type: stylegan2.path_length, weight: {s['pl_weight']}, interval: {s['G_reg_interval']},
      batch_shrink: {s['pl_batch_shrink']}, decay: {s['pl_decay']}}}
data: {{type: core.digits, resolution: {res}, channels: 3}}
metrics: []
train: {{batch_size: {batch}, g_lr: {s['lr']}, d_lr: {s['lr']}, betas: [{s['betas'][0]}, {s['betas'][1]}],
        eps: {s['eps']}, ema_kimg: {batch * 10 / 32}, ema_rampup: {s['ema_rampup']}, seed: 0, tick_kimg: 1000}}
run: {{task: train}}
"""


def build_ours_step(res: int, batch: int, w: Widths = FULL):
    from stylegan_core.build import build_model
    from stylegan_core.plugins import load_plugins
    from stylegan_core.spec.loading import load_spec_text

    reg = load_plugins().registry
    return build_model(load_spec_text(step_spec(res, batch, w), registry=reg, file="<bench/peer.py step spec>"), reg)


def real_batches(dataset, batch: int, seed: int) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """Random batches of the dataset's images as floats in [-1, 1] (what the official loop feeds its loss)."""
    from stylegan_core.images import images_to_float

    gen = torch.Generator().manual_seed(seed)

    def draw():
        idx = torch.randint(len(dataset), (batch,), generator=gen)
        return images_to_float(torch.stack([torch.as_tensor(dataset[int(i)][0]) for i in idx])), torch.zeros([batch, 0])

    return draw


class OfficialStep:
    """The official training loop's inner step (``training/training_loop.py``: the phases with their
    intervals, gradients flattened and ``nan_to_num``'d, Adam, the G_ema update) on the official loss."""

    def __init__(self, off, G: torch.nn.Module, D: torch.nn.Module, batch: int, real_batch: Callable):
        s = STEP
        self.G, self.D, self.batch, self.real_batch = G, D, batch, real_batch
        self.G_ema = copy.deepcopy(G).eval()
        self.loss = off.loss.StyleGAN2Loss(device=torch.device("cpu"), G=G, D=D, r1_gamma=s["r1_gamma"],
                                           style_mixing_prob=s["style_mixing_prob"], pl_weight=s["pl_weight"],
                                           pl_batch_shrink=s["pl_batch_shrink"], pl_decay=s["pl_decay"],
                                           pl_no_weight_grad=True)
        self.nan_to_num = off.misc.nan_to_num
        self.phases = []
        for name, module, interval in (("G", G, s["G_reg_interval"]), ("D", D, s["D_reg_interval"])):
            ratio = interval / (interval + 1)
            opt = torch.optim.Adam(module.parameters(), lr=s["lr"] * ratio, betas=[b ** ratio for b in s["betas"]],
                                   eps=s["eps"])
            self.phases += [(name + "main", module, opt, 1), (name + "reg", module, opt, interval)]
        self.ema_kimg = batch * 10 / 32
        self.cur_nimg = 0
        self.batch_idx = 0

    def step(self) -> None:
        real_img, real_c = self.real_batch()
        all_z = torch.randn([len(self.phases) * self.batch, self.G.z_dim]).split(self.batch)
        c = torch.zeros([self.batch, 0])
        for (name, module, opt, interval), z in zip(self.phases, all_z):
            if self.batch_idx % interval != 0:
                continue
            opt.zero_grad(set_to_none=True)
            module.requires_grad_(True)
            self.loss.accumulate_gradients(phase=name, real_img=real_img, real_c=real_c, gen_z=z, gen_c=c,
                                           gain=interval, cur_nimg=self.cur_nimg)
            module.requires_grad_(False)
            params = [p for p in module.parameters() if p.grad is not None]
            if params:
                flat = torch.cat([p.grad.flatten() for p in params])
                self.nan_to_num(flat, nan=0, posinf=1e5, neginf=-1e5, out=flat)
                for p, g in zip(params, flat.split([p.numel() for p in params])):
                    p.grad = g.reshape(p.shape)
            opt.step()
        with torch.no_grad():
            ema_nimg = min(self.ema_kimg * 1000, self.cur_nimg * STEP["ema_rampup"])
            beta = 0.5 ** (self.batch / max(ema_nimg, 1e-8))
            for p_ema, p in zip(self.G_ema.parameters(), self.G.parameters()):
                p_ema.copy_(p.lerp(p_ema, beta))
            for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                b_ema.copy_(b)
        self.cur_nimg += self.batch
        self.batch_idx += 1


def step_pair(off, res: int, batch: int, w: Widths = FULL):
    """(official step, our Trainer, check results): both sides' networks with the same weights, compared in
    the training configuration (train mode: unfused modulation; G output, G and D gradients of
    ``D(G(z)).sum() + mean(G(z)^2)``)."""
    from stylegan_core.training.loop import Trainer

    built = build_ours_step(res, batch, w)
    torch.manual_seed(0)
    G_off = off.sg2.Generator(**dict(sg2_kwargs(w), img_resolution=res, fused_modconv_default="inference_only"))
    D_off = off.sg2.Discriminator(**dict(d_kwargs(w), img_resolution=res))
    built.G.load_state_dict(G_off.state_dict(), strict=True)
    built.D.load_state_dict(D_off.state_dict(), strict=True)
    g = torch.Generator().manual_seed(2)
    z, c = torch.randn([batch, w.z_dim], generator=g), torch.zeros([batch, 0])
    results = {}
    for side, G, D in (("official", G_off, D_off), ("ours", built.G, built.D)):
        for m in (G, D):
            m.train().requires_grad_(True).zero_grad(set_to_none=True)
        img = G(z, c, noise_mode="const")
        (D(img, c).sum() + img.square().mean()).backward()
        results[side] = (img.detach(), grads_of(G), grads_of(D))
        for m in (G, D):
            m.zero_grad(set_to_none=True)
            m.requires_grad_(False)
    errs = (check("step G output (train mode)", results["ours"][0], results["official"][0]),
            check_grads("step G", results["ours"][1], results["official"][1]),
            check_grads("step D", results["ours"][2], results["official"][2]))
    official = OfficialStep(off, G_off, D_off, batch, real_batches(built.dataset, batch, seed=3))
    ours = Trainer(built, Path(tempfile.gettempdir()) / "peer-bench-unused", progress=False, log=lambda s: None)
    return official, ours, errs


def at(obj, idx: int) -> Callable[[], None]:
    """One training step of ``obj`` (official or ours) with ``batch_idx = idx`` (which phases run)."""
    def run():
        obj.batch_idx = idx
        obj.step()
    return run


def step_section(off, args, peak: float) -> dict[str, float]:
    res, batch = args.step_res, args.step_batch
    print(f"## G + D training step: official / ours, {res} px, batch {batch}\n")
    print("Official: `training.loss.StyleGAN2Loss` in the phase loop of `training/training_loop.py` "
          "(Gmain, Greg, Dmain, Dreg at lazy intervals 4 and 16; nan_to_num'd flat gradients; Adam; G_ema). "
          "Ours: `Trainer.step()` of the model this spec builds (the same networks, official weights copied in):\n")
    print("```yaml\n" + step_spec(res, batch) + "```\n")
    official, ours, errs = step_pair(off, res, batch)
    print(f"Check (train mode): G output {errs[0]:.1e} (relative to max(1, max|official|)); gradients, relative "
          f"L2: G {errs[1]:.1e}, D {errs[2]:.1e}.\n")
    print(f"Median ms of {args.repeats} alternating steps of each kind; GFLOP/s: the FLOPs of one such step on "
          f"that side / its median.\n\n{load()}\n")
    table(["step", "official ms", "ours ms", "ratio", "GFLOP/s off / ours", "ours % of roofline"])
    med: dict[int, dict[str, float]] = {}
    for label, idx in STEP_KINDS:
        fo, fu = at(official, idx), at(ours, idx)
        fl_o, fl_u = count_flops(fo), count_flops(fu)
        m = med[idx] = alternate({"official": fo, "ours": fu}, args.repeats)
        row([label, ms(m["official"]), ms(m["ours"]), f"**{m['official'] / m['ours']:.2f}x**",
             f"{gflops(fl_o, m['official'])} / {gflops(fl_u, m['ours'])}", f"{100 * fl_u / m['ours'] / peak:.0f}%"])
    cyc = {side: (med[0][side] + 3 * med[4][side] + 12 * med[1][side]) / 16 for side in ("official", "ours")}
    ratio = cyc["official"] / cyc["ours"]
    row(["16-step cycle (1 all + 3 Greg + 12 main)", ms(cyc["official"]), ms(cyc["ours"]), f"**{ratio:.2f}x**",
         "", ""])
    print(f"\n{load()}\n")
    return {"cycle": ratio, **{label: med[idx]["official"] / med[idx]["ours"] for label, idx in STEP_KINDS}}


# -- ops -----------------------------------------------------------------------------------------------
def ops_section(off, args) -> None:
    from stylegan_core import ops

    g = torch.Generator().manual_seed(0)
    f4 = ops.setup_filter([1, 3, 3, 1])
    fl = ops.design_lowpass_filter(12, cutoff=4, width=6, fs=32)
    x_up = torch.randn(4, 256, 64, 64, generator=g)
    x_ba, b_ba = torch.randn(4, 512, 64, 64, generator=g), torch.randn(512, generator=g)
    x_fl, b_fl = torch.randn(4, 256, 36, 36, generator=g), torch.randn(256, generator=g)
    flk = dict(up=2, down=2, padding=[11, 10, 11, 10], gain=math.sqrt(2), slope=0.2)
    cases = [
        ("upfirdn2d up2 4x4", x_up, None,
         lambda x, b: off.upfirdn2d.upfirdn2d(x, f4, up=2, padding=[2, 1, 2, 1], gain=4, impl="ref"),
         lambda x, b: ops.upfirdn2d(x, f4, up=2, padding=[2, 1, 2, 1], gain=4)),
        ("bias_act lrelu", x_ba, b_ba,
         lambda x, b: off.bias_act.bias_act(x, b, act="lrelu", impl="ref"),
         lambda x, b: ops.bias_act(x, b, act="lrelu")),
        ("filtered_lrelu up2/down2 12-tap", x_fl, b_fl,
         lambda x, b: off.filtered_lrelu.filtered_lrelu(x, fl, fl, b, **flk, impl="ref"),
         lambda x, b: ops.filtered_lrelu(x, fl, fl, b, **flk)),
    ]
    print("## Ops alone: official impl='ref' / ours (impl='auto')\n")
    print(f"Median ms of {args.repeats} alternating runs; fwd+bwd: `op(x, b).backward(dy)` (x and b).\n\n{load()}\n")
    table(["op", "input", "check", "official fwd", "ours fwd", "ratio", "official fwd+bwd", "ours fwd+bwd", "ratio"])
    for name, x, b, f_off, f_our in cases:
        with torch.no_grad():
            y = f_off(x, b)
            err = check(name, f_our(x, b), y)
        dy = torch.randn(y.shape, generator=g)
        xg = x.clone().requires_grad_(True)
        bg = None if b is None else b.clone().requires_grad_(True)

        def fwd(f):
            def run():
                with torch.no_grad():
                    f(x, b)
            return run

        def fwdbwd(f):
            def run():
                xg.grad = None
                if bg is not None:
                    bg.grad = None
                f(xg, bg).backward(dy)
            return run

        mf = alternate({"official": fwd(f_off), "ours": fwd(f_our)}, args.repeats)
        mb = alternate({"official": fwdbwd(f_off), "ours": fwdbwd(f_our)}, args.repeats)
        row([name, "x".join(map(str, x.shape)), f"{err:.1e}", ms(mf["official"]), ms(mf["ours"]),
             f"{mf['official'] / mf['ours']:.1f}x", ms(mb["official"]), ms(mb["ours"]),
             f"{mb['official'] / mb['ours']:.1f}x"])
    print(f"\n{load()}\n")


# -- targets -----------------------------------------------------------------------------------------------
def targets(summary: dict[str, Any]) -> None:
    """The targets of this comparison, each with the value measured in this run."""
    lines = []
    for r in summary.get("sg2", []):
        lines.append((f"StyleGAN2 G forward at {r['res']} px >= 1.5x", r["fwd"], 1.5, "x"))
        lines.append((f"StyleGAN2 G forward+backward at {r['res']} px >= 1.5x", r["fwdbwd"], 1.5, "x"))
        if r["res"] == 128:
            lines.append(("StyleGAN2 G forward at 128 px >= 60 % of the fp32 matmul roofline", 100 * r["roofline"],
                          60, "%"))
    for r in summary.get("sg3", []):
        if r["res"] >= 64:
            lines.append((f"StyleGAN3-T G forward at {r['res']} px >= 5x", r["fwd"], 5, "x"))
            lines.append((f"StyleGAN3-T G forward+backward at {r['res']} px >= 4x", r["fwdbwd"], 4, "x"))
    if "step" in summary:
        lines.append(("G + D training step (16-step cycle) >= 1.5x", summary["step"]["cycle"], 1.5, "x"))
    if not lines:
        return
    print("## Targets\n")
    table(["target", "measured", "met"])
    for what, value, want, unit in lines:
        row([what, f"{value:.2f}{unit}" if unit == "x" else f"{value:.0f}{unit}", "met" if value >= want else "NOT met"])
    print()


# -- quick mode ---------------------------------------------------------------------------------------------
def quick_ours() -> None:
    """Our side alone on tiny networks: the grouped and the shared-weight formulations of the modulated
    convolutions agree (outputs and gradients), FLOPs are counted, a training step of every phase runs."""
    from stylegan_core.ops import modconv
    from stylegan_core.training.loop import Trainer

    print("## Quick check of our side (tiny networks; nothing is timed)\n")
    table(["network", "output", "grouped vs shared: output / gradients", "GFLOP fwd", "GFLOP fwd+bwd"])
    for class_name, kw in ((SG2_CLASS, sg2_kwargs(TINY)), (SG3_CLASS, sg3_kwargs(TINY))):
        torch.manual_seed(0)
        G = ours_from_official(class_name, dict(kw, img_resolution=16)).eval()
        z, c, dy = generator_inputs(G, 3)
        with modconv.forced_formulation("grouped"):
            y_g, g_g = output_and_grads(G, z, c, dy)
        with modconv.forced_formulation("shared"):
            y_s, g_s = output_and_grads(G, z, c, dy)
        what = f"{class_name.rsplit('.', 2)[-2]} grouped vs shared"
        out_err, grad_err = check(what, y_s, y_g), check_grads(what, g_s, g_g)
        f, fb = generator_workloads(G, z, c, dy)
        fl, flb = count_flops(f), count_flops(fb)
        if not fl > 0 and flb > fl:
            raise CheckFailed(f"{class_name}: FLOPs not counted ({fl}, {flb})")
        row([class_name.rsplit(".", 2)[-2], "x".join(map(str, y_g.shape)), f"{out_err:.1e} / {grad_err:.1e}",
             f"{fl / 1e9:.4f}", f"{flb / 1e9:.4f}"])
    built = build_ours_step(16, 4, TINY)
    tr = Trainer(built, Path(tempfile.gettempdir()) / "peer-bench-unused", progress=False, log=lambda s: None)
    label, idx = STEP_KINDS[0]  # every phase; the other kinds run a subset of them
    tr.batch_idx = idx
    stats = tr.step()
    bad = {k: v for k, v in stats.items() if not math.isfinite(v)}
    if bad:
        raise CheckFailed(f"training step, {label}: not finite: {bad}")
    print(f"\nA training step of the tiny step spec, {label}: ran, finite ({', '.join(sorted(stats))}).\n")


def quick_official(off) -> None:
    """The tiny networks against the official ones: generators (eval) and the step's G and D (train)."""
    print("## Quick check against the official code (tiny networks; nothing is timed)\n")
    table(["network", "check out / grad"])
    for class_name, kw in ((SG2_CLASS, sg2_kwargs(TINY)), (SG3_CLASS, sg3_kwargs(TINY))):
        G_off, G_our = generator_pair(off, class_name, kw, 16)
        z, c, dy = generator_inputs(G_off, 3)
        out_err, grad_err = compare_generators(class_name, G_off, G_our, z, c, dy)
        row([class_name, f"{out_err:.1e} / {grad_err:.1e}"])
    official, ours, errs = step_pair(off, 16, 4, TINY)
    row(["training step G / D (train mode)", f"{errs[0]:.1e} / {errs[1]:.1e}, {errs[2]:.1e}"])
    for _, idx in STEP_KINDS:
        at(official, idx)()
        at(ours, idx)()
    print("\nBoth sides ran each kind of training step.\n")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", help="work tree of NVlabs/stylegan3 (default: $STYLEGAN_OFFICIAL)")
    ap.add_argument("--quick", action="store_true", help="correctness only, tiny networks, nothing timed")
    ap.add_argument("--sections", nargs="+", default=["sg2", "sg3", "step", "ops"],
                    choices=["sg2", "sg3", "step", "ops"])
    ap.add_argument("--sg2-res", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--sg3-res", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--batch", type=int, default=4, help="generator batch")
    ap.add_argument("--step-res", type=int, default=64)
    ap.add_argument("--step-batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per side and workload (medians)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--cpu-cache", choices=["ours", "both", "none"], default="ours",
                    help="which side runs with our large-block CPU cache (stylegan_core.ops.memory; default: "
                         "ours, each side as it ships)")
    args = ap.parse_args(argv)
    global CACHE_SIDES
    CACHE_SIDES = {"ours": ("ours",), "both": ("ours", "official"), "none": ()}[args.cpu_cache]
    if args.threads:
        torch.set_num_threads(args.threads)
    from stylegan_core.ops import _compiled, memory

    print("# bench/peer.py: the official NVlabs/stylegan3 code against stylegan-core, in one process\n")
    print(f"`{' '.join([Path(sys.executable).name, 'bench/peer.py'] + (argv if argv is not None else sys.argv[1:]))}`"
          f"\n\ntorch {torch.__version__}, {torch.get_num_threads()} threads, {platform.machine()}, "
          f"python {platform.python_version()}; our compiled ops: "
          f"{'built' if _compiled.available() else 'NOT built (' + str(_compiled.load_error()) + ')'}; our large-block "
          f"CPU cache (stylegan_core.ops.memory, {memory.default_limit_mib()} MiB) on the side(s): "
          f"{', '.join(CACHE_SIDES) or 'none'}; {load()}\n")
    tree = official_tree(args.official)
    try:
        if args.quick:
            quick_ours()
            if tree is not None:
                quick_official(import_official(tree))
            else:
                print("No official tree given (--official PATH or STYLEGAN_OFFICIAL): our side only.\n")
            print("All checks passed.")
            return 0
        if tree is None:
            print("No official tree given (--official PATH or STYLEGAN_OFFICIAL): nothing to compare with. "
                  "Fetch https://github.com/NVlabs/stylegan3 outside this repository and pass its path; "
                  "`--quick` checks our side alone.")
            return 0
        off = import_official(tree)
        print(f"Official tree: {tree}\n")
        peak = matmul_peak()
        print(f"fp32 matmul roofline: {peak / 1e9:.0f} GFLOP/s (2048 x 2048 product, median of 5)\n")
        summary: dict[str, Any] = {}
        if "sg2" in args.sections:
            summary["sg2"] = generators_section("StyleGAN2 G", off, SG2_CLASS, sg2_kwargs(FULL), args.sg2_res, args,
                                                peak)
        if "sg3" in args.sections:
            summary["sg3"] = generators_section("StyleGAN3-T G", off, SG3_CLASS, sg3_kwargs(FULL), args.sg3_res, args,
                                                peak)
        if "step" in args.sections:
            summary["step"] = step_section(off, args, peak)
        if "ops" in args.sections:
            ops_section(off, args)
        targets(summary)
    except CheckFailed as e:
        print(f"\nCHECK FAILED: {e}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
