"""GPU check: are the kernels right on this device, and how fast is training with them? One command, one GPU.

    python bench/gpu_check.py                  # cuda:0; under 8 minutes on one data-centre GPU
    python bench/gpu_check.py --device cpu     # the same script on the CPU, the Triton kernels under Triton's
                                               # interpreter, small shapes: a smoke test (correctness only)

Part 1, correctness. Every kernel family that can run on the device (``triton`` and ``cuda`` on a GPU; ``cpp`` and
``triton`` on the CPU) is compared with ``ref`` on the same device (``ref`` in float64 from the same inputs rounded
to the kernel's dtype), for every op, in float32, float16, bfloat16 and float64: the self-check cases of
``ops/_selfcheck.py``, the official fixtures' shapes and arguments (``../shared/fixtures/nvlabs/ops``; ``--fixtures``)
and random shapes; forward, gradients and (float32, float64) second order. One line per op, kernel and dtype.

Part 2, speed (GPU; ``--timing`` runs it on the CPU too, at toy sizes). Each op at StyleGAN sizes, forward and
forward+backward, for ``ref`` and each kernel family (median ms, CUDA-synchronised); then whole training steps (G and
D phases, lazy R1, as ``stylegan-run train`` runs them) of StyleGAN2 (the paper256 preset) and StyleGAN3-T (the
stylegan3-t preset) at 256 px, batch 32, on a synthetic image-folder dataset: with the reference ops and with the
kernels ``impl='auto'`` picks, in float32 and in mixed precision (``train.precision`` fp32 / fp16; the presets'
``num_fp16_res: 4``, ``conv_clamp: 256``): images/s, ms per step, peak GPU memory, and which kernel each op ran;
and the data path alone (the training loader: PNG decode, batch assembly), images/s.

The output format is described in the README ("GPU"). Exit code 0 when every correctness check passed, 1 otherwise.
Without a GPU (and without ``--device cpu``) it says so and exits with 0, having checked nothing.
Not a test: CI runs ``--device cpu`` under the interpreter (tests/test_triton_ops.py,
``test_gpu_check_on_the_cpu``) and asserts on the correctness lines only.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

REPO = Path(__file__).resolve().parents[1]
DTYPE_NAMES = ("float32", "float16", "bfloat16", "float64")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (cuda:0), cuda:N or cpu (default: cuda)")
    ap.add_argument("--fixtures", type=Path, default=REPO.parent / "shared" / "fixtures" / "nvlabs",
                    help="the official fixtures folder (its ops/*.json are the shapes checked)")
    ap.add_argument("--random", type=int, default=None, help="random cases per op (default: GPU 24, CPU 2)")
    ap.add_argument("--dtypes", nargs="+", default=list(DTYPE_NAMES), choices=DTYPE_NAMES)
    ap.add_argument("--timing", action="store_true", help="run part 2 on the CPU too (toy sizes)")
    ap.add_argument("--no-timing", action="store_true", help="skip part 2")
    ap.add_argument("--res", type=int, default=None, help="training-step resolution (default: GPU 256, CPU 32)")
    ap.add_argument("--batch", type=int, default=None, help="training-step batch (default: GPU 32, CPU 4)")
    ap.add_argument("--steps", type=int, default=None, help="timed training steps per setting (default: GPU 4, "
                                                            "CPU 1), after one warm-up step")
    ap.add_argument("--models", nargs="+", default=["sg2", "sg3t"], choices=["sg2", "sg3t"])
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for part 2; settings that would not fit are "
                                                                "reported as skipped (default 420)")
    return ap.parse_args(argv)


# --------------------------------------------------------------------------------------------
# Part 1: correctness
# --------------------------------------------------------------------------------------------
def kernel_families(device: Any) -> list[str]:
    from stylegan_core.ops import _compiled, _triton

    out = []
    if device.type == "cuda":
        if _triton.supports("cuda"):
            out.append("triton")
        if _compiled.supports("cuda"):
            out.append("cuda")
    else:
        if _compiled.supports("cpu"):
            out.append("cpp")
        if _triton.supports("cpu"):
            out.append("triton")
    return out


def fixture_cases(folder: Path) -> dict[str, list]:
    """The official fixtures' calls as self-check cases (their inputs, shapes and arguments), per op."""
    from safetensors.torch import load_file

    from stylegan_core import ops
    from stylegan_core.ops._selfcheck import Case

    fns = {"upfirdn2d.upfirdn2d": ("upfirdn2d", ops.upfirdn2d), "upfirdn2d.upsample2d": ("upfirdn2d", ops.upsample2d),
           "upfirdn2d.downsample2d": ("upfirdn2d", ops.downsample2d),
           "upfirdn2d.filter2d": ("upfirdn2d", ops.filter2d), "bias_act.bias_act": ("bias_act", ops.bias_act),
           "filtered_lrelu.filtered_lrelu": ("filtered_lrelu", ops.filtered_lrelu)}
    out: dict[str, list] = {"bias_act": [], "upfirdn2d": [], "filtered_lrelu": []}
    for name in ("upfirdn2d", "bias_act", "filtered_lrelu"):
        manifest = folder / "ops" / f"{name}.json"
        if not manifest.is_file():
            continue
        tensors = load_file(str(manifest.with_suffix(".safetensors")))
        for case in json.loads(manifest.read_text())["cases"]:
            if case["fn"] not in fns:
                continue
            op, fn = fns[case["fn"]]
            keys = case["keys"]
            kwargs = {k: v for k, v in case.get("kwargs", {}).items() if k != "impl"}
            diff = {n: tensors[k].double() for n, k in keys.items() if n in ("x", "b")}
            fixed = {n: tensors[k].clone() for n, k in keys.items() if n in ("f", "fu", "fd")}
            grads = tuple(n for n in diff if f"d{n}" in keys)

            def call(impl, fn=fn, kwargs=kwargs, **t):
                x = t.pop("x")
                if "f" in t or fn in (ops.upfirdn2d, ops.upsample2d, ops.downsample2d, ops.filter2d):
                    return fn(x, t.pop("f", None), **t, **kwargs, impl=impl)
                return fn(x, **t, **kwargs, impl=impl)

            out[op].append(Case(f"fixture {name} {case['id']}", call, diff, grads, fixed))
    return out


def random_cases(op: str, n: int, seed: int, small: bool) -> list:
    """``n`` random calls of ``op`` (up/down 1-8, paddings including negative, 1-D and 2-D filters, flip, gain,
    every activation, bias, clamp), at StyleGAN-like sizes (``small``: a few pixels, for the interpreter)."""
    import torch

    from stylegan_core import ops
    from stylegan_core.ops._selfcheck import Case

    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    hw = (lambda: rng.randint(4, 10)) if small else (lambda: rng.randint(8, 40))
    nc = (lambda: rng.randint(1, 3)) if small else (lambda: rng.randint(2, 16))
    cases = []
    while len(cases) < n:
        i = len(cases)
        if op == "bias_act":
            act = rng.choice(sorted(ops.activation_funcs))
            shape = (rng.randint(1, 4), nc(), hw(), hw())
            dim = rng.choice([1, 1, 0, 3])
            kw = dict(dim=dim, act=act, alpha=rng.choice([None, 0.1]), gain=rng.choice([None, 0.7]),
                      clamp=rng.choice([None, 1.0]))
            call = (lambda kw: lambda impl, x, b: ops.bias_act(x, b, **kw, impl=impl))(kw)
            cases.append(Case(f"random bias_act {i} {act} {shape}", call,
                              {"x": torch.randn(shape, generator=gen, dtype=torch.float64) * 2,
                               "b": torch.randn(shape[dim], generator=gen, dtype=torch.float64)}, ("x", "b")))
        elif op == "upfirdn2d":
            up, down = [rng.randint(1, 8), rng.randint(1, 8)], [rng.randint(1, 8), rng.randint(1, 8)]
            f = (torch.rand(rng.randint(1, 12), generator=gen) if rng.random() < 0.5 else
                 torch.rand(rng.randint(1, 6), rng.randint(1, 6), generator=gen)) + 0.1
            pad = [rng.randint(-3, 8) for _ in range(4)]
            x = torch.randn(1, nc(), hw(), hw(), generator=gen, dtype=torch.float64)
            kw = dict(up=up, down=down, padding=pad, flip_filter=rng.random() < 0.5, gain=rng.choice([1.0, 2.5]))
            try:
                if ops.upfirdn2d(x, f.double(), **kw, impl="ref").numel() == 0:
                    continue
            except (ValueError, RuntimeError):
                continue
            call = (lambda kw: lambda impl, x, f: ops.upfirdn2d(x, f, **kw, impl=impl))(kw)
            cases.append(Case(f"random upfirdn2d {i} {kw}", call, {"x": x}, ("x",), {"f": f}))
        else:
            up, down = rng.choice([1, 2, 2, 4]), rng.choice([1, 2, 2, 4])
            ku = rng.choice([1, up * 2, up * 3, up * 6]) if up > 1 else rng.choice([1, 3])
            kd = rng.choice([1, down * 2, down * 6]) if down > 1 else rng.choice([1, 4])
            lp = lambda k, radial: ops.design_lowpass_filter(k, cutoff=k / 3, width=k / 2, fs=k * 2.5, radial=radial)
            fixed = {}
            if ku > 1:
                fixed["fu"] = lp(ku, False) if rng.random() < 0.8 else torch.rand(3, 4, generator=gen) + 0.1
            if kd > 1:
                fixed["fd"] = lp(kd, rng.random() < 0.5)
            pad = [rng.randint(-2, 10) for _ in range(4)]
            x = torch.randn(rng.randint(1, 2), nc(), hw(), hw(), generator=gen, dtype=torch.float64)
            kw = dict(up=up, down=down, padding=pad, gain=rng.choice([1.0, 2 ** 0.5]), slope=rng.choice([0.2, 1.0]),
                      clamp=rng.choice([None, 0.5, 256.0]), flip_filter=rng.random() < 0.5)
            try:
                if ops.filtered_lrelu(x, fixed.get("fu"), fixed.get("fd"), **kw, impl="ref").numel() == 0:
                    continue
            except (ValueError, RuntimeError, AssertionError):
                continue
            call = (lambda kw: lambda impl, x, b, fu=None, fd=None: ops.filtered_lrelu(x, fu, fd, b, **kw,
                                                                                        impl=impl))(kw)
            cases.append(Case(f"random filtered_lrelu {i} {kw}", call,
                              {"x": x, "b": torch.randn(x.shape[1], generator=gen, dtype=torch.float64) * 0.3},
                              ("x", "b"), fixed))
    return cases


def correctness(args: argparse.Namespace, device: Any) -> tuple[int, int]:
    import torch

    from stylegan_core.ops import _selfcheck

    families = kernel_families(device)
    print("== correctness: kernel vs ref (float64) on the same device; error relative to ref's largest magnitude ==")
    if not families:
        print(f"no kernel can run on {device}: nothing to check")
        return 0, 0
    on_cpu = device.type == "cpu"
    n_random = args.random if args.random is not None else (2 if on_cpu else 24)
    fixtures = fixture_cases(args.fixtures) if (args.fixtures / "ops").is_dir() else {}
    print(f"cases per op: {len(_selfcheck.CASES['bias_act']())}+ self-check, "
          f"{'fixtures from ' + str(args.fixtures) if fixtures else 'no fixtures (--fixtures)'}, {n_random} random")
    print(f"{'op':<16}{'impl':<8}{'dtype':<10}{'passed':>8}  {'worst':>8}  result")
    total = failed = 0
    for op in ("bias_act", "upfirdn2d", "filtered_lrelu"):
        cases = _selfcheck.CASES[op]() + fixtures.get(op, []) + random_cases(op, n_random, seed=7, small=on_cpu)
        for fam in families:
            for dname in args.dtypes:
                dtype = getattr(torch, dname)
                use = cases
                if on_cpu and fam == "triton" and dname != "float32":  # the interpreter is slow: fewer cases
                    use = _selfcheck.CASES[op]()
                second = dname in ("float32", "float64")
                res = _selfcheck.run_cases(op, fam, device, dtype, cases=use, second_order=second)
                bad = [(name, err) for name, _, err in res if err is not None]
                worst = max((max(e.values()) for _, e, _ in res if e), default=0.0)
                total += 1
                failed += bool(bad)
                status = "ok" if not bad else f"FAIL {bad[0][0]}: {bad[0][1]}"
                print(f"{op:<16}{fam:<8}{dname:<10}{len(res) - len(bad):>4}/{len(res):<3}  {worst:>8.1e}  {status}",
                      flush=True)
    return total, failed


# --------------------------------------------------------------------------------------------
# Part 2: speed
# --------------------------------------------------------------------------------------------
def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_ms(fn: Callable[[], Any], device: Any, reps: int) -> float:
    fn()  # warm-up (and compile)
    sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def op_timings(device: Any, families: list[str], reps: int) -> None:
    import torch

    from stylegan_core import ops

    toy = device.type == "cpu"
    n, big, mid = (2, 8, 16) if toy else (32, 128, 64)
    fu = ops.design_lowpass_filter(12, cutoff=4.0, width=6.0, fs=32.0)
    fdr = ops.design_lowpass_filter(12, cutoff=4.0, width=6.0, fs=32.0, radial=True)
    f4 = ops.setup_filter([1, 3, 3, 1])
    rows = [
        (f"bias_act lrelu [{n},{big},{mid * 2},{mid * 2}]", (n, big, mid * 2, mid * 2),
         lambda x, impl: ops.bias_act(x, None, act="lrelu", clamp=256, impl=impl)),
        (f"upsample2d 4x4 [{n},{big},{mid},{mid}]", (n, big, mid, mid),
         lambda x, impl: ops.upsample2d(x, f4, impl=impl)),
        (f"downsample2d 4x4 [{n},{big},{mid * 2},{mid * 2}]", (n, big, mid * 2, mid * 2),
         lambda x, impl: ops.downsample2d(x, f4, impl=impl)),
        (f"filtered_lrelu up2/down2 12-tap [{n},{big},{mid + 4},{mid + 4}]", (n, big, mid + 4, mid + 4),
         lambda x, impl: ops.filtered_lrelu(x, fu, fu, None, up=2, down=2, padding=[11, 10, 11, 10], clamp=256,
                                            impl=impl)),
        (f"filtered_lrelu up2/down2 radial 12x12 [{n},{big},{mid + 4},{mid + 4}]", (n, big, mid + 4, mid + 4),
         lambda x, impl: ops.filtered_lrelu(x, fu, fdr, None, up=2, down=2, padding=[11, 10, 11, 10], clamp=256,
                                            impl=impl)),
    ]
    impls = ["ref"] + families
    head = "".join(f"{i + ' fwd':>12}" for i in impls) + "".join(f"{i + ' f+b':>12}" for i in impls)
    print(f"== ops: median ms of {reps} (forward; forward+backward) ==")
    print(f"{'op':<52}{'dtype':<9}{head}")
    for dtype in (torch.float32, torch.float16):
        for name, shape, fn in rows:
            x = torch.randn(shape, device=device, dtype=dtype)
            cells_f, cells_b = [], []
            for impl in impls:
                try:
                    with torch.no_grad():
                        cells_f.append(f"{median_ms(lambda: fn(x, impl), device, reps):12.2f}")
                    xg = x.clone().requires_grad_()
                    r = torch.randn_like(x)

                    def fb():
                        y = fn(xg, impl)
                        torch.autograd.grad(y, xg, torch.ones_like(y) if y.shape != r.shape else r)

                    cells_b.append(f"{median_ms(fb, device, reps):12.2f}")
                except Exception as e:  # noqa: BLE001  (a kernel that cannot run here is reported, not fatal)
                    cells_f.append(f"{'error':>12}")
                    cells_b.append(f"{'error':>12}")
                    print(f"  {name} {impl}: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            print(f"{name:<52}{str(dtype).replace('torch.', ''):<9}{''.join(cells_f)}{''.join(cells_b)}", flush=True)


def synthetic_dataset(folder: Path, res: int, count: int) -> Path:
    """A zip of ``count`` random RGB PNGs of ``res`` px (smooth noise, so PNG decoding costs what photos cost)."""
    import numpy as np
    from PIL import Image

    path = folder / f"synthetic-{res}.zip"
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for i in range(count):
            small = rng.integers(0, 256, (res // 8, res // 8, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((res, res), Image.BILINEAR)
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            z.writestr(f"img{i:05d}.png", buf.getvalue())
    return path


MODEL_PRESETS = {"sg2": "stylegan2-paper256", "sg3t": "stylegan3-t"}


def build(name: str, data: Path, res: int, batch: int, precision: str, toy: bool) -> Any:
    from stylegan_core.build import build_model
    from stylegan_core.plugins import load_plugins
    from stylegan_core.spec import load_spec

    ps = load_plugins()
    over = [f"data={{type: core.image_folder, path: '{data}', resolution: {res}, xflip: true}}",
            f"train.batch_size={batch}", f"train.precision={precision}", "metrics=[]", "augment=null",
            "train.tick_kimg=1000"]
    if toy:
        over += ["generator.synthesis.channel_max=16", "discriminator.channel_max=16",
                 "generator.synthesis.channel_base=512", "discriminator.channel_base=512"]
    return build_model(load_spec(MODEL_PRESETS[name], over, ps.registry), ps.registry)


def train_timings(args: argparse.Namespace, device: Any, deadline: float) -> None:
    import torch

    from stylegan_core import ops
    from stylegan_core.ops import _dispatch
    from stylegan_core.training.loop import Trainer

    toy = device.type == "cpu"
    res = args.res or (32 if toy else 256)
    batch = args.batch or (4 if toy else 32)
    steps = args.steps or (1 if toy else 4)
    print(f"== training steps: G and D phases (lazy R1), {res} px, batch {batch}, median of {steps} after 1 warm-up ==")
    print(f"{'model':<7}{'ops':<10}{'precision':<11}{'img/s':>9}{'ms/step':>10}{'peak GB':>9}  kernels (op: impl)")
    with tempfile.TemporaryDirectory() as tmp:
        data = synthetic_dataset(Path(tmp), res, max(4 * batch, 64))
        for name in args.models:
            for impl, prec in (("ref", "fp32"), ("auto", "fp32"), ("ref", "fp16"), ("auto", "fp16")):
                label = "ref" if impl == "ref" else "kernels"
                if time.time() > deadline:
                    print(f"{name:<7}{label:<10}{prec:<11}  skipped (--budget {args.budget:g} s reached)")
                    continue
                try:
                    built = build(name, data, res, batch, prec, toy)
                    with ops.default_impl(impl):
                        tr = Trainer(built, Path(tmp) / f"run-{name}-{impl}-{prec}", progress=False,
                                     log=lambda s: None)
                        if device.type == "cuda":
                            torch.cuda.reset_peak_memory_stats(device)
                        with _dispatch.recording() as rec:
                            tr.step()  # warm-up: kernels compile, self-checks run
                        sync(device)
                        times = []
                        for _ in range(steps):
                            if time.time() > deadline:
                                break
                            t0 = time.perf_counter()
                            tr.step()
                            sync(device)
                            times.append(time.perf_counter() - t0)
                    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
                    ms = 1000 * statistics.median(times) if times else float("nan")
                    kernels = ", ".join(f"{op}: {'+'.join(sorted(set().union(*per.values())))}"
                                        for op, per in sorted(rec.items()))
                    print(f"{name:<7}{label:<10}{prec:<11}{batch / (ms / 1000):>9.1f}{ms:>10.1f}{peak:>9.2f}  "
                          f"{kernels}", flush=True)
                    del tr, built
                except Exception as e:  # noqa: BLE001  (reported: the other settings still run)
                    print(f"{name:<7}{label:<10}{prec:<11}  error: {type(e).__name__}: {str(e).splitlines()[0][:150]}")
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        data_path_timing(data, res, batch, device, toy)


def data_path_timing(data: Path, res: int, batch: int, device: Any, toy: bool) -> None:
    """Images/s of the training loader alone (decode, flip, batch, copy to the device)."""
    from stylegan_core.build import build_model
    from stylegan_core.plugins import load_plugins
    from stylegan_core.spec import load_spec
    from stylegan_core.training import distributed, loader

    ps = load_plugins()
    spec = load_spec(None, [f"data={{type: core.image_folder, path: '{data}', resolution: {res}, xflip: true}}",
                            "metrics=[]"], ps.registry)
    ds = build_model(spec, ps.registry).dataset
    workers = loader.default_num_workers()
    ld, _ = loader.make_loader(ds, batch, 0, distributed.from_env(device.type), workers,
                               pin_memory=device.type == "cuda")
    it = iter(ld)
    next(it)
    n = 2 if toy else 16
    t0 = time.perf_counter()
    for _ in range(n):
        imgs, _ = next(it)
        imgs = imgs.to(device, non_blocking=True)
    sync(device)
    dt = time.perf_counter() - t0
    print(f"data path: core.image_folder (PNG in a zip), {res} px, batch {batch}, {workers} workers: "
          f"{n * batch / dt:.1f} img/s")


def describe_device(device: Any) -> str:
    import torch

    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        return f"{device} ({p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2 ** 30:.1f} GB)"
    return f"cpu ({os.cpu_count()} cores{', Triton interpreter' if os.environ.get('TRITON_INTERPRET') == '1' else ''})"


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.device == "cpu":
        # Triton's kernels run on CPU tensors only under its interpreter, chosen when they are defined
        os.environ.setdefault("TRITON_INTERPRET", "1")
    import torch

    import stylegan_core
    from stylegan_core.ops import _compiled

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: no CUDA device here (torch {torch.__version__}: torch.cuda.is_available() is False), so "
              "nothing was checked or timed; run it on a machine with a GPU, or with --device cpu for the CPU smoke "
              "test")
        return 0
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    t_start = time.time()
    try:
        import triton
        tv = triton.__version__
    except ImportError:
        tv = "not installed"
    print(f"gpu_check {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}  device {describe_device(device)}  "
          f"torch {torch.__version__}  triton {tv}  stylegan_core {stylegan_core.__version__}  "
          f"compiled ops {'cpu+cuda' if _compiled.built_with_cuda() else 'cpu' if _compiled.available() else 'none'}")
    total, failed = correctness(args, device)
    t_correct = time.time() - t_start
    timing = not args.no_timing and (device.type == "cuda" or args.timing)
    if timing:
        op_timings(device, kernel_families(device), reps=1 if device.type == "cpu" else 20)
        train_timings(args, device, deadline=time.time() + args.budget)
    verdict = "PASS" if failed == 0 and total > 0 else ("FAIL" if failed else "NOTHING CHECKED")
    print(f"result: {verdict} ({total - failed} of {total} kernel/op/dtype checks passed; correctness "
          f"{t_correct:.0f} s, total {time.time() - t_start:.0f} s)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
