"""``stylegan-run DIR generate``: images for given seeds with truncation, class or text prompt, and noise mode.

Also the official ``style_mixing.py`` grid (:func:`style_mixing_grid`) and images from a
projected w (:func:`generate_from_projected_w`, as the official ``gen_images.py --projected-w``).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from ..images import save_grid, save_image
from ..interfaces import CentroidTruncation, TextConditioned, TextEncoder


def parse_seeds(spec: Union[str, Sequence[int]]) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``; a list of ints is returned as is."""
    if not isinstance(spec, str):
        return [int(s) for s in spec]
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a:
                raise ValueError(f"seed range {part!r} runs backwards")
            out.extend(range(a, b + 1))
        elif re.fullmatch(r"\d+", part):
            out.append(int(part))
        else:
            raise ValueError(f"cannot parse seeds {spec!r}: expected e.g. '0-7' or '1,5,9'")
    if not out:
        raise ValueError(f"no seeds in {spec!r}")
    return out


def class_vector(G: torch.nn.Module, class_idx: Optional[int], n: int = 1, device: str = "cpu") -> torch.Tensor:
    """The one-hot label ``[n, c_dim]`` of ``class_idx`` (``[n, 0]`` for an unconditional generator).

    A conditional generator needs a class in range; an unconditional one refuses a class.
    """
    c = torch.zeros([n, G.c_dim], device=device)
    if G.c_dim:
        if class_idx is None:
            raise ValueError(f"the generator is conditional (c_dim={G.c_dim}): give a class with --class")
        if not 0 <= class_idx < G.c_dim:
            raise ValueError(f"class {class_idx} is out of range: the generator has {G.c_dim} classes")
        c[:, class_idx] = 1
    elif class_idx is not None:
        raise ValueError("--class was given but the generator is unconditional")
    return c


def is_text_conditioned(G: Any) -> bool:
    """Whether ``G`` takes captions as ``c`` (:class:`~stylegan_core.interfaces.TextConditioned`): the first of G
    and its submodules (G, its mapping network, the mapping's parts, ...) that declares ``text_conditioned``
    decides; when none does, a :class:`~stylegan_core.interfaces.TextEncoder` among them makes G
    text-conditioned."""
    if isinstance(G, TextConditioned):
        return bool(G.text_conditioned)
    if not isinstance(G, torch.nn.Module):
        return False
    modules = [m for _, m in G.named_modules()]
    declared = next((m for m in modules if isinstance(m, TextConditioned)), None)
    if declared is not None:
        return bool(declared.text_conditioned)
    return any(isinstance(m, TextEncoder) for m in modules)


def condition(G: torch.nn.Module, class_idx: Optional[int] = None, text: Optional[str] = None, n: int = 1,
              device: str = "cpu") -> Union[torch.Tensor, list[str]]:
    """``c`` for ``n`` images: ``[text] * n`` for a text-conditioned generator, else :func:`class_vector`.

    A text-conditioned generator needs a prompt and refuses a class; any other generator refuses a prompt.
    """
    if is_text_conditioned(G):
        if class_idx is not None:
            raise ValueError("--class was given but the generator is text-conditioned: give a prompt with --text")
        if text is None or not str(text).strip():
            raise ValueError('the generator is text-conditioned: give a prompt with --text "..."')
        return [str(text)] * n
    if text is not None:
        raise ValueError("--text was given but this generator is not text-conditioned (it takes "
                         + (f"a class, --class 0-{G.c_dim - 1})" if G.c_dim else "no condition)"))
    return class_vector(G, class_idx, n, device)


def expand_condition(c: Union[torch.Tensor, list[str]], n: int) -> Union[torch.Tensor, list[str]]:
    """``n`` copies of the one-sample condition ``c`` from :func:`condition` (a ``[1, c_dim]`` tensor or one caption)."""
    return c[:1] * n if isinstance(c, list) else c.expand(n, -1)


def seed_z(G: torch.nn.Module, seeds: Sequence[int], device: str = "cpu") -> torch.Tensor:
    """z ``[len(seeds), z_dim]`` drawn as the official tools do: ``np.random.RandomState(seed).randn(z_dim)``."""
    return torch.from_numpy(np.stack([np.random.RandomState(s).randn(G.z_dim) for s in seeds])).to(
        torch.float32).to(device)


@torch.no_grad()
def style_mixing_grid(G: torch.nn.Module, row_seeds: Sequence[int], col_seeds: Sequence[int], path: Path,
                      styles: Sequence[int] = tuple(range(7)), truncation_psi: float = 1.0,
                      truncation_cutoff: Optional[int] = None, noise_mode: str = "const",
                      class_idx: Optional[int] = None, device: str = "cpu", text: Optional[str] = None) -> Path:
    """The official ``style_mixing.py`` grid as one PNG (``text``: the prompt of a text-conditioned generator).

    Each cell (row r, column c) takes the ws of row seed r and replaces the ws at the layer
    indices ``styles`` (default 0-6, the coarse layers: pose, shape) with those of column seed
    c. The first row shows the column seeds' own images, the first column the row seeds'
    own images, and the top-left cell is black. Size: ``(len(cols)+1) x (len(rows)+1)`` images.
    """
    row_seeds, col_seeds = list(row_seeds), list(col_seeds)
    if not row_seeds or not col_seeds:
        raise ValueError("style mixing needs at least one row seed and one column seed")
    styles = sorted(set(int(s) for s in styles))
    bad = [s for s in styles if not 0 <= s < G.num_ws]
    if bad:
        raise ValueError(f"--styles {bad} out of range: this generator has {G.num_ws} ws (layers 0-{G.num_ws - 1})")
    G = G.to(device).eval()
    all_seeds = sorted(set(row_seeds + col_seeds))
    ws = G.mapping(seed_z(G, all_seeds, device), condition(G, class_idx, text, len(all_seeds), device),
                   truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
    w_of = dict(zip(all_seeds, ws))
    own = dict(zip(all_seeds, G.synthesize(ws, noise_mode=noise_mode).cpu()))
    cells = []
    for r in row_seeds:
        mixed = torch.stack([w_of[r].clone() for _ in col_seeds])
        for j, cseed in enumerate(col_seeds):
            mixed[j, styles] = w_of[cseed][styles]
        cells.append(G.synthesize(mixed, noise_mode=noise_mode).cpu())
    C, H, W = own[all_seeds[0]].shape
    blank = -torch.ones([C, H, W])
    grid = [blank] + [own[c] for c in col_seeds]
    for i, r in enumerate(row_seeds):
        grid += [own[r]] + list(cells[i])
    save_grid(torch.stack(grid), Path(path), (len(col_seeds) + 1, len(row_seeds) + 1))
    return Path(path)


def load_projected_w(path: Path, G: torch.nn.Module) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """ws ``[1, num_ws, w_dim]`` and noise buffers from a ``projected_w.safetensors`` written by ``project``."""
    from ..io import read_safetensors

    t, _ = read_safetensors(Path(path))  # a clear error naming the file if it is not safetensors
    if "w" not in t:
        raise ValueError(f"{path}: no tensor 'w' (expected the output of stylegan-run ... project)")
    w = t["w"].to(torch.float32)
    if w.ndim == 3 and w.shape[0] == 1:
        w = w[0]
    if w.ndim != 2 or w.shape[1] != G.w_dim or w.shape[0] not in (1, G.num_ws):
        raise ValueError(f"{path}: w has shape {tuple(w.shape)}; this generator needs [{G.num_ws}, {G.w_dim}] "
                         f"or [1, {G.w_dim}]")
    ws = w.expand(G.num_ws, -1)[None].clone()
    noise = {k[len("noise."):]: v for k, v in t.items() if k.startswith("noise.")}
    return ws, noise


@torch.no_grad()
def generate_from_projected_w(G: torch.nn.Module, path: Path, out: Path, noise_mode: str = "const",
                              device: str = "cpu") -> Path:
    """The image of a projected w (and its optimized noise buffers, when saved), as one PNG."""
    import copy

    ws, noise = load_projected_w(Path(path), G)
    G = copy.deepcopy(G).to(device).eval()
    bufs = dict(G.synthesis.named_buffers())
    for name, v in noise.items():
        if name not in bufs or bufs[name].shape != v.shape:
            raise ValueError(f"{path}: noise buffer {name!r} does not fit this generator")
        bufs[name].copy_(v)
    return save_image(G.synthesize(ws.to(device), noise_mode=noise_mode).cpu(), out)


@torch.no_grad()
def generate_images(G: torch.nn.Module, seeds: Sequence[int], outdir: Path, truncation_psi: float = 1.0,
                    truncation_cutoff: Optional[int] = None, noise_mode: str = "const",
                    class_idx: Optional[int] = None, grid: bool = True, device: str = "cpu",
                    text: Optional[str] = None, centroids: Optional[Union[str, Path]] = None) -> list[Path]:
    """One PNG per seed (``seed0042.png``), z drawn as the official tools do (NumPy RandomState(seed)), and a grid.

    ``text``: the prompt of a text-conditioned generator (every image gets it as its caption).
    ``centroids``: a safetensors file of centroids in W for a mapping network with multimodal truncation
    (:class:`~stylegan_core.interfaces.CentroidTruncation`): ws are truncated toward the nearest centroid
    of their class instead of the class mean."""
    c = condition(G, class_idx, text, 1, device)
    if centroids is not None and not isinstance(G.mapping, CentroidTruncation):
        raise ValueError(f"--centroids: the mapping network {type(G.mapping).__name__} has no centroid truncation "
                         f"(load_centroids and truncate_to_centroids)")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    G = G.to(device).eval()
    if centroids is not None:
        G.mapping.load_centroids(centroids)
    paths, imgs = [], []
    for seed in seeds:
        z = seed_z(G, [seed], device)
        if centroids is not None:
            ws = G.mapping.truncate_to_centroids(G.mapping(z, c), truncation_psi, c, truncation_cutoff)
            img = G.synthesize(ws, noise_mode=noise_mode)
        else:
            img = G(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, noise_mode=noise_mode)
        imgs.append(img.cpu())
        paths.append(save_image(img.cpu(), outdir / f"seed{seed:04d}.png"))
    if grid and len(imgs) > 1:
        gw = int(np.ceil(np.sqrt(len(imgs))))
        gh = int(np.ceil(len(imgs) / gw))
        allimg = torch.cat(imgs)
        pad = gw * gh - len(imgs)
        if pad:
            allimg = torch.cat([allimg, -torch.ones([pad, *allimg.shape[1:]])])
        save_grid(allimg, outdir / "grid.png", (gw, gh))
        paths.append(outdir / "grid.png")
    return paths
