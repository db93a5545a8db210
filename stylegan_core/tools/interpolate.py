"""``stylegan-run DIR interpolate``: frames and a video between the images of several seeds.

Between consecutive seeds the latent moves in ``frames`` steps: linearly in W (the default,
as the official ``gen_video.py`` does between keyframes, after truncation), or along the great
circle in Z (``space='z'``, spherical interpolation, since z is drawn from a Gaussian whose mass
lies near a sphere; each frame's z is then mapped).

Text-to-text (a text-conditioned generator given several prompts, as the StyleGAN-T paper's interpolation
figure): keyframe ``i`` is prompt ``i`` with seed ``i`` (one seed: the same z for every prompt), and the frames
interpolate the condition with the latent: in W the ws of the keyframes (whose text part is the prompt's
embedding), in Z the slerped z with the linearly interpolated prompt embeddings (the mapping network takes
embeddings as ``c``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from ..images import float_to_uint8, save_png
from ..interfaces import TextEncoder
from .generate import condition, expand_condition, is_text_conditioned, seed_z
from .video import write_video


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` (norms interpolated linearly)."""
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
    omega = torch.acos((ua * ub).sum(-1, keepdim=True).clamp(-1, 1))
    so = torch.sin(omega)
    lin = (1 - t) * ua + t * ub
    sph = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / so.clamp_min(1e-12)
    u = torch.where(so.abs() < 1e-6, lin, sph)
    return u * ((1 - t) * na + t * nb)


@torch.no_grad()
def interpolate(G: torch.nn.Module, seeds: Sequence[int], outdir: Path, frames: int = 30, space: str = "w",
                truncation_psi: float = 1.0, truncation_cutoff: Optional[int] = None, noise_mode: str = "const",
                class_idx: Optional[int] = None, loop: bool = False, fps: float = 30, video: str = "auto",
                write_frames: bool = True, device: str = "cpu",
                text: Union[None, str, Sequence[str]] = None) -> dict:
    """Write ``frames/frame00000.png ...`` and ``interpolation.mp4`` (or ``.gif``) into ``outdir``.

    ``frames`` is the number of frames per transition between consecutive keyframes (the last
    keyframe's image closes the sequence, or with ``loop`` the path returns to the first one). The
    keyframes are the seeds, or with several prompts (``text``, a text-conditioned generator) the
    prompts, each with its seed (see the module docstring).
    Returns ``{"frames": [paths], "video": path or None, "num_frames": n}``.
    """
    seeds = list(seeds)
    texts = [text] if isinstance(text, str) else list(text or [])
    if len(texts) > 1:
        return _interpolate_texts(G, seeds, texts, Path(outdir), frames, space, truncation_psi, truncation_cutoff,
                                  noise_mode, class_idx, loop, fps, video, write_frames, device)
    text = texts[0] if texts else None
    if len(seeds) < 2:
        raise ValueError(f"interpolation needs at least two seeds, got {seeds}")
    if frames < 1:
        raise ValueError(f"--frames must be >= 1, got {frames}")
    if space not in ("w", "z"):
        raise ValueError(f"interpolate: --space must be 'w' (linear in W) or 'z' (slerp in Z), got {space!r}")
    outdir = Path(outdir)
    G = G.to(device).eval()
    keys = seeds + [seeds[0]] if loop else seeds
    z = seed_z(G, keys, device)
    c = condition(G, class_idx, text, 1, device)  # a class vector, or the prompt of a text-conditioned G
    kw = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    ws_key = G.mapping(z, expand_condition(c, len(keys)), **kw) if space == "w" else None
    imgs = []
    for i in range(len(keys) - 1):
        last = i == len(keys) - 2
        for f in range(frames + (0 if (loop or not last) else 1)):
            t = f / frames
            if space == "w":
                ws = ws_key[i:i + 1].lerp(ws_key[i + 1:i + 2], t)
            else:
                ws = G.mapping(slerp(z[i:i + 1], z[i + 1:i + 2], t), c, **kw)
            imgs.append(float_to_uint8(G.synthesize(ws, noise_mode=noise_mode).cpu())[0])
    return _write(imgs, outdir, write_frames, fps, video)


def _text_embeddings(G: torch.nn.Module, texts: Sequence[str]) -> torch.Tensor:
    """The embeddings ``[len(texts), c_dim]`` of prompts by the generator's text encoder (its mapping's
    :class:`~stylegan_core.interfaces.TextEncoder` part)."""
    enc = next((m for _, m in G.mapping.named_modules() if isinstance(m, TextEncoder)), None)
    if enc is None:
        raise ValueError("interpolate --space z between prompts needs the generator's text encoder (a TextEncoder "
                         "part in its mapping network); use --space w")
    return enc(list(texts)).detach()


def _interpolate_texts(G, seeds, texts, outdir, frames, space, truncation_psi, truncation_cutoff, noise_mode,
                       class_idx, loop, fps, video, write_frames, device) -> dict:
    if not is_text_conditioned(G):
        raise ValueError("several --text prompts were given but this generator is not text-conditioned")
    if class_idx is not None:
        raise ValueError("--class was given but the generator is text-conditioned: interpolate between prompts")
    if any(not str(t).strip() for t in texts):
        raise ValueError("interpolate: every --text prompt must be non-empty")
    if len(seeds) == 1:
        seeds = seeds * len(texts)
    if len(seeds) != len(texts):
        raise ValueError(f"interpolate: {len(texts)} prompts need {len(texts)} seeds (one per prompt) or one seed, "
                         f"got {len(seeds)}")
    if frames < 1:
        raise ValueError(f"--frames must be >= 1, got {frames}")
    if space not in ("w", "z"):
        raise ValueError(f"interpolate: --space must be 'w' (linear in W) or 'z' (slerp in Z), got {space!r}")
    G = G.to(device).eval()
    order = list(range(len(texts))) + ([0] if loop else [])
    z = seed_z(G, [seeds[i] for i in order], device)
    prompts = [str(texts[i]) for i in order]
    kw = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    if space == "w":
        ws_key = G.mapping(z, prompts, **kw)
    else:
        emb = _text_embeddings(G, prompts).to(device)
    imgs = []
    for i in range(len(order) - 1):
        last = i == len(order) - 2
        for f in range(frames + (0 if (loop or not last) else 1)):
            t = f / frames
            if space == "w":
                ws = ws_key[i:i + 1].lerp(ws_key[i + 1:i + 2], t)
            else:
                ws = G.mapping(slerp(z[i:i + 1], z[i + 1:i + 2], t), emb[i:i + 1].lerp(emb[i + 1:i + 2], t), **kw)
            imgs.append(float_to_uint8(G.synthesize(ws, noise_mode=noise_mode).cpu())[0])
    return _write(imgs, outdir, write_frames, fps, video)


def _write(imgs: list, outdir: Path, write_frames: bool, fps: float, video: str) -> dict:
    paths = []
    if write_frames:
        fdir = outdir / "frames"
        fdir.mkdir(parents=True, exist_ok=True)
        for old in fdir.glob("frame*.png"):
            old.unlink()
        for k, arr in enumerate(imgs):
            paths.append(save_png(arr, fdir / f"frame{k:05d}.png"))
    vid = write_video(imgs, outdir / "interpolation", fps=fps, fmt=video) if video != "none" else None
    return {"frames": paths, "video": vid, "num_frames": len(imgs)}
