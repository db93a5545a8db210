"""``stylegan-run DIR generate``: images for given seeds with truncation, class and noise mode."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ..training.loop import float_to_uint8, save_grid


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


@torch.no_grad()
def generate_images(G: torch.nn.Module, seeds: Sequence[int], outdir: Path, truncation_psi: float = 1.0,
                    truncation_cutoff: Optional[int] = None, noise_mode: str = "const",
                    class_idx: Optional[int] = None, grid: bool = True, device: str = "cpu") -> list[Path]:
    """One PNG per seed (``seed0042.png``), z drawn as the official tools do (NumPy RandomState(seed)), and a grid."""
    from PIL import Image

    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    c = torch.zeros([1, G.c_dim], device=device)
    if G.c_dim:
        if class_idx is None:
            raise ValueError(f"the generator is conditional (c_dim={G.c_dim}): give a class with --class")
        if not 0 <= class_idx < G.c_dim:
            raise ValueError(f"class {class_idx} is out of range: the generator has {G.c_dim} classes")
        c[:, class_idx] = 1
    elif class_idx is not None:
        raise ValueError("--class was given but the generator is unconditional")
    G = G.to(device).eval()
    paths, imgs = [], []
    for seed in seeds:
        z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).to(torch.float32).to(device)
        img = G(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, noise_mode=noise_mode)
        imgs.append(img.cpu())
        arr = float_to_uint8(img)[0]
        p = outdir / f"seed{seed:04d}.png"
        Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr).save(p)
        paths.append(p)
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
