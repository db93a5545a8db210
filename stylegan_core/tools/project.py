"""``stylegan-run DIR project``: invert a target image into W or W+ (the official ``projector.py``).

The official schedule, scaled by the number of steps: Adam (betas 0.9, 0.999) from w_avg
(the mean of 10,000 mapped z, drawn with ``RandomState(123)``), learning rate 0.1 with a
cosine ramp-down over the last 25 % of the steps and a linear ramp-up over the first 5 %;
Gaussian noise added to w, ``w_std * 0.05 * max(0, 1 - t / 0.75) ** 2`` at progress t;
the per-layer noise buffers are re-drawn, optimized too and regularized (weight 1e5) toward
no spatial autocorrelation at every scale down to 8x8, and renormalized after each step.
The distance is LPIPS (VGG16 features; images above 256 px are area-downsampled to 256 as in
the official code), the pixel MSE, or their sum (``loss='lpips+mse'``).

``space='w'`` optimizes one w ``[1, w_dim]`` shared by every layer; ``'w+'`` one per layer.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..images import float_to_uint8, images_to_float

LOSSES = ("lpips", "mse", "lpips+mse")


@dataclass
class Projection:
    """Result of :func:`project`: the final ws ``[1, num_ws, w_dim]``, the optimized w, noise buffers, frames."""

    ws: torch.Tensor
    w: torch.Tensor  # [1, w_dim] (space w) or [num_ws, w_dim] (space w+)
    noise: dict[str, torch.Tensor]
    image: torch.Tensor  # [1, C, H, W] in [-1, 1]
    frames: list[np.ndarray] = field(default_factory=list)  # target | synth side by side, uint8 HWC
    losses: list[float] = field(default_factory=list)


def load_target(path: Path, resolution: int, channels: int) -> torch.Tensor:
    """A target image as float ``[1, C, R, R]`` in [-1, 1]: center-cropped to a square, Lanczos-resized (official)."""
    from PIL import Image

    try:
        im = Image.open(path)
        im.load()
    except Exception as e:
        raise ValueError(f"{path}: cannot read the target image: {e}") from None
    im = im.convert("L" if channels == 1 else "RGB")
    w, h = im.size
    s = min(w, h)
    im = im.crop(((w - s) // 2, (h - s) // 2, (w + s) // 2, (h + s) // 2))
    if im.size != (resolution, resolution):
        im = im.resize((resolution, resolution), Image.LANCZOS)
    arr = np.asarray(im)
    arr = arr[:, :, None] if arr.ndim == 2 else arr
    return images_to_float(torch.from_numpy(arr.copy()).permute(2, 0, 1)[None])


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two images in [-1, 1], measured on their 8-bit versions (as saved)."""
    x = torch.from_numpy(float_to_uint8(a).astype(np.float64))
    y = torch.from_numpy(float_to_uint8(b).astype(np.float64))
    mse = float(((x - y) ** 2).mean())
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def make_lpips(weights: Optional[str] = None, vgg_weights: Optional[str] = None, seed: int = 0):
    """LPIPS of :mod:`stylegan_core.metrics.lpips` (a clear error when that module is not there)."""
    try:
        from ..metrics.lpips import LPIPS
    except ImportError as e:
        raise ValueError(f"the LPIPS loss is not available ({e}); use --loss mse") from None
    if vgg_weights is None:
        warnings.warn("no --vgg-weights given: LPIPS runs on a randomly initialized VGG16, a weak perceptual "
                      "loss (give a local VGG16 weights file for the official behaviour)", RuntimeWarning)
    return LPIPS(weights=weights, vgg_weights=vgg_weights, seed=seed)


def _noise_reg(bufs: list[torch.Tensor]) -> torch.Tensor:
    reg = torch.zeros([])
    for v in bufs:
        noise = v[None, None, :, :]
        while True:
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=3)).mean() ** 2
            reg = reg + (noise * torch.roll(noise, shifts=1, dims=2)).mean() ** 2
            if noise.shape[2] <= 8:
                break
            noise = F.avg_pool2d(noise, kernel_size=2)
    return reg


def project(G: torch.nn.Module, target: torch.Tensor, *, steps: int = 1000, space: str = "w", loss: str = "lpips",
            lpips: Optional[torch.nn.Module] = None, class_idx: Optional[int] = None, text: Optional[str] = None,
            seed: int = 0,
            w_avg_samples: int = 10000, initial_learning_rate: float = 0.1, initial_noise_factor: float = 0.05,
            lr_rampdown_length: float = 0.25, lr_rampup_length: float = 0.05, noise_ramp_length: float = 0.75,
            regularize_noise_weight: float = 1e5, mse_weight: float = 1.0, frame_every: int = 0,
            callback: Optional[Callable[[int, float], None]] = None, device: str = "cpu") -> Projection:
    """Find w (or W+) whose image matches ``target`` (float ``[1, C, H, W]`` in [-1, 1]); see the module docstring.

    G is not modified (a copy's noise buffers are optimized). ``frame_every`` > 0 records a
    progress frame (target beside the current image) every that many steps, and the last step.
    """
    from .generate import condition, expand_condition

    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    if space not in ("w", "w+"):
        raise ValueError(f"project: --space must be 'w' or 'w+', got {space!r}")
    if loss not in LOSSES:
        raise ValueError(f"--loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    want = (1, G.img_channels, G.img_resolution, G.img_resolution)
    if tuple(target.shape) != want:
        raise ValueError(f"the target is {tuple(target.shape)}, the generator makes {want}")
    if "lpips" in loss and lpips is None:
        lpips = make_lpips(seed=seed)
    G = copy.deepcopy(G).to(device).eval().requires_grad_(False)
    target = target.to(device)
    gen = torch.Generator(device="cpu").manual_seed(seed)

    # w statistics (official: 10k z from RandomState(123), the first w of each)
    c1 = condition(G, class_idx, text, 1, device)
    with torch.no_grad():
        z = torch.from_numpy(np.random.RandomState(123).randn(w_avg_samples, G.z_dim)).to(torch.float32).to(device)
        w_samples = torch.cat([G.mapping(zb, expand_condition(c1, len(zb)))[:, :1, :] for zb in z.split(1000)])
    w_avg = w_samples.mean(0, keepdim=True)  # [1, 1, C]
    w_std = float(((w_samples - w_avg) ** 2).sum() / w_avg_samples) ** 0.5

    noise_bufs = {n: b for n, b in G.synthesis.named_buffers() if "noise_const" in n}
    w_opt = (w_avg if space == "w" else w_avg.repeat(1, G.num_ws, 1)).clone().requires_grad_(True)
    for b in noise_bufs.values():
        b.copy_(torch.randn(b.shape, generator=gen))
        b.requires_grad_(True)
    opt = torch.optim.Adam([w_opt] + list(noise_bufs.values()), betas=(0.9, 0.999), lr=initial_learning_rate)

    def perceptual_in(x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        if x.shape[2] > 256:
            x = F.interpolate(x, size=(256, 256), mode="area")
        return x

    target_p = perceptual_in(target) if lpips is not None else None
    result = Projection(ws=torch.empty(0), w=torch.empty(0), noise={}, image=torch.empty(0))
    for step in range(steps):
        t = step / steps
        w_noise_scale = w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
        lr_ramp = min(1.0, (1.0 - t) / lr_rampdown_length)
        lr_ramp = 0.5 - 0.5 * np.cos(lr_ramp * np.pi)
        lr_ramp = lr_ramp * min(1.0, t / lr_rampup_length)
        for g in opt.param_groups:
            g["lr"] = initial_learning_rate * lr_ramp
        w_noise = torch.randn(w_opt.shape, generator=gen).to(device) * w_noise_scale
        ws = (w_opt + w_noise)
        ws = ws.repeat(1, G.num_ws, 1) if space == "w" else ws
        synth = G.synthesize(ws, noise_mode="const")
        dist = torch.zeros([], device=device)
        if "lpips" in loss:
            dist = dist + lpips(perceptual_in(synth), target_p).sum()
        if "mse" in loss:
            dist = dist + (mse_weight if loss != "mse" else 1.0) * (synth - target).square().mean()
        total = dist + _noise_reg(list(noise_bufs.values())) * regularize_noise_weight
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        with torch.no_grad():
            for b in noise_bufs.values():
                b -= b.mean()
                b *= b.square().mean().rsqrt()
        d = float(dist.detach())
        result.losses.append(d)
        if callback is not None:
            callback(step, d)
        if frame_every and (step % frame_every == 0 or step == steps - 1):
            result.frames.append(np.concatenate([float_to_uint8(target.detach())[0],
                                                 float_to_uint8(synth.detach())[0]], axis=1))

    with torch.no_grad():
        w_final = w_opt.detach()[0]  # [1, C] or [num_ws, C]
        ws = w_final.expand(G.num_ws, -1)[None].clone()
        for b in noise_bufs.values():
            b.requires_grad_(False)
        img = G.synthesize(ws, noise_mode="const")
    result.ws, result.w, result.image = ws.cpu(), w_final.cpu(), img.cpu()
    result.noise = {n: b.detach().cpu().clone() for n, b in noise_bufs.items()}
    return result


def save_projection(res: Projection, outdir: Path, target: torch.Tensor, space: str, fps: float = 30,
                    video: str = "auto", meta: Optional[dict] = None) -> dict[str, Path]:
    """Write ``projected_w.safetensors`` (``w`` ``[num_ws, w_dim]`` for W+ or ``[1, w_dim]`` for W, and
    ``noise.<buffer>``), ``target.png``, ``proj.png``, the progress video and ``project.json``."""
    import json

    from safetensors.torch import save_file

    from ..images import save_image
    from .video import write_video

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    out = {"w": outdir / "projected_w.safetensors", "target": outdir / "target.png", "proj": outdir / "proj.png"}
    tensors = {"w": res.w.contiguous(), **{f"noise.{k}": v.contiguous() for k, v in res.noise.items()}}
    save_file(tensors, str(out["w"]), metadata={"space": space, "format": "stylegan-core projected_w"})
    save_image(target.cpu(), out["target"])
    save_image(res.image, out["proj"])
    if res.frames and video != "none":
        out["video"] = write_video(res.frames, outdir / "proj", fps=fps, fmt=video)
    info = {"space": space, "steps": len(res.losses), "final_loss": res.losses[-1] if res.losses else None,
            "psnr": psnr(res.image, target.cpu()), **(meta or {})}
    (outdir / "project.json").write_text(json.dumps(info, indent=2) + "\n")
    out["json"] = outdir / "project.json"
    return out
