"""The FastGAN generator Projected GAN trains by default (``--cfg fastgan`` / ``fastgan_lite``).

Written from the documented semantics of the official ``pg_modules/networks_fastgan.py``;
module, parameter and buffer names are the official ones (``synthesis.init.init.0``,
``synthesis.feat_8.1``, ...), so official weights load with ``strict=True``
(``tests/test_projected_gan_fixtures.py`` reproduces the official images in eval and train mode).

* Mapping (``projected_gan.fastgan_mapping``): none, as the official ``DummyMapping``: ws = z as
  ``[N, 1, z_dim]`` (so ``w_dim = z_dim`` and ``num_ws = 1``). Class-conditional (official ``--cond True``,
  ``FastganSynthesisCond``; labelled data): ws = ``[z, embed(c.argmax(1))]`` ``[N, 2, z_dim]``, the class
  embedding table ``embed`` (official ``synthesis.embed``, ``num_classes`` rows: 1000 in the official code,
  whatever the data) held by the mapping part, so that every tool that maps (z, c) to ws gets the embedding.
* Synthesis (``projected_gan.fastgan``): z normalised to unit second moment -> SN ConvTranspose
  4x4 + BN + GLU (4x4) -> up blocks to the output size (nearest x2, SN 3x3 conv to 2x channels,
  BN, GLU; the full block does it twice with a noise injection after each conv, the ``lite``
  block once without noise) with skip-excitation 4->64, 8->128, 16->256, 32->512 -> SN 3x3 conv
  with bias to RGB, **without tanh** (official; ``output_tanh: true`` adds one).
  Channels ``nfc[res] = int(multiplier[res] * ngf)``, capped at ``channel_max`` when given (not official).
  Conditional (``cond: true``): the up blocks' batch norms are conditional (official ``CCBN``: batch
  statistics or running ``stored_mean``/``stored_var``, scaled by ``1 + gain(y)`` and shifted by ``bias(y)``,
  SN linear layers of the class embedding ``y = ws[:, 1]``); the full block has one noise injection used
  after both convolutions (official ``UpBlockBigCond``), the lite block none (``UpBlockSmallCond``).

Differences from the official code, on purpose: resolutions 16..64 are supported (the official
code needs >= 128; below 128 only the used layers are built; at >= 128 the unused ``feat_256`` and
``se_256`` of the 128 px network are built as the official so that its state loads);
``noise_mode='const'`` draws a fixed noise per layer from a seeded generator (no buffers, so the
official state still loads); ``noise={module path: tensor}`` feeds given noise (a conditional full block's
two draws of its one injection are ``feat_<res>.noise.0`` and ``feat_<res>.noise.1``); the conditional network
also works above 256 px (the official ``FastganSynthesisCond`` cannot be built there).
"""
from __future__ import annotations

import warnings
import zlib
from typing import Annotated, Optional

import torch
from pydantic import Field
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm

from stylegan_core.api import ImgChannels, MappingNetwork, SynthesisNetwork, WDim

NFC_MULTIPLIER = {2: 16, 4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5, 512: 0.25, 1024: 0.125}
SE_SOURCES = {64: 4, 128: 8, 256: 16, 512: 32}  # skip-excitation: big map <- small map


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class GLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[1] // 2
        return x[:, :n] * torch.sigmoid(x[:, n:])


class Swish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class NoiseInjection(nn.Module):
    """``feat + weight * noise`` with noise ``[N, 1, H, W]`` (drawn by the caller)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, feat: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return feat + self.weight * noise


class InitLayer(nn.Module):
    def __init__(self, nz: int, channel: int, sz: int = 4):
        super().__init__()
        self.init = nn.Sequential(spectral_norm(nn.ConvTranspose2d(nz, channel * 2, sz, 1, 0, bias=False)),
                                  nn.BatchNorm2d(channel * 2), GLU())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.init(z.view(z.shape[0], -1, 1, 1))


class UpBlock(nn.Sequential):
    """Nearest x2, then (SN 3x3 conv, [noise], BN, GLU) once (lite) or twice (full), with the official indices."""

    def __init__(self, cin: int, cout: int, lite: bool):
        layers: list[nn.Module] = [nn.Upsample(scale_factor=2, mode="nearest"),
                                   spectral_norm(nn.Conv2d(cin, cout * 2, 3, 1, 1, bias=False))]
        if lite:
            layers += [nn.BatchNorm2d(cout * 2), GLU()]
        else:
            layers += [NoiseInjection(), nn.BatchNorm2d(cout * 2), GLU(),
                       spectral_norm(nn.Conv2d(cout, cout * 2, 3, 1, 1, bias=False)), NoiseInjection(),
                       nn.BatchNorm2d(cout * 2), GLU()]
        super().__init__(*layers)

    def forward(self, x: torch.Tensor, noise_fn=None) -> torch.Tensor:  # type: ignore[override]
        for name, m in self.named_children():
            x = m(x, noise_fn(name, x)) if isinstance(m, NoiseInjection) else m(x)
        return x


class CCBN(nn.Module):
    """Class-conditional batch norm (official ``CCBN``): ``batch_norm(x, stored_mean, stored_var)`` (batch
    statistics in training, momentum 0.1, eps 1e-5; no affine) times ``1 + gain(y)`` plus ``bias(y)``, with SN
    linear layers ``gain``/``bias`` of the class embedding ``y`` ``[N, embed_dim]``."""

    def __init__(self, channels: int, embed_dim: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.gain = spectral_norm(nn.Linear(embed_dim, channels))
        self.bias = spectral_norm(nn.Linear(embed_dim, channels))
        self.eps, self.momentum = float(eps), float(momentum)
        self.register_buffer("stored_mean", torch.zeros(channels))
        self.register_buffer("stored_var", torch.ones(channels))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = (1 + self.gain(y)).view(y.shape[0], -1, 1, 1)
        bias = self.bias(y).view(y.shape[0], -1, 1, 1)
        out = F.batch_norm(x, self.stored_mean, self.stored_var, None, None, self.training, self.momentum, self.eps)
        return out * gain + bias


class UpBlockCond(nn.Module):
    """The conditional up block with the official names: nearest x2 (``up``), then SN 3x3 conv (``conv``), CCBN
    (``bn``), GLU (``act``) for ``lite`` (``UpBlockSmallCond``); else twice (``conv1``/``bn1``, ``conv2``/``bn2``)
    with the one ``noise`` injection after each conv (``UpBlockBigCond``). ``forward(x, y, noise_fn)``."""

    def __init__(self, cin: int, cout: int, embed_dim: int, lite: bool):
        super().__init__()
        self.lite = bool(lite)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        if self.lite:
            self.conv = spectral_norm(nn.Conv2d(cin, cout * 2, 3, 1, 1, bias=False))
            self.bn = CCBN(cout * 2, embed_dim)
        else:
            self.conv1 = spectral_norm(nn.Conv2d(cin, cout * 2, 3, 1, 1, bias=False))
            self.conv2 = spectral_norm(nn.Conv2d(cout, cout * 2, 3, 1, 1, bias=False))
            self.bn1 = CCBN(cout * 2, embed_dim)
            self.bn2 = CCBN(cout * 2, embed_dim)
            self.noise = NoiseInjection()
        self.act = GLU()

    def forward(self, x: torch.Tensor, y: torch.Tensor, noise_fn=None) -> torch.Tensor:
        x = self.up(x)
        if self.lite:
            return self.act(self.bn(self.conv(x), y))
        x = self.conv1(x)
        x = self.act(self.bn1(self.noise(x, noise_fn("noise.0", x)), y))
        x = self.conv2(x)
        return self.act(self.bn2(self.noise(x, noise_fn("noise.1", x)), y))


class SEBlock(nn.Module):
    def __init__(self, ch_in: int, ch_out: int):
        super().__init__()
        self.main = nn.Sequential(nn.AdaptiveAvgPool2d(4), spectral_norm(nn.Conv2d(ch_in, ch_out, 4, 1, 0, bias=False)),
                                  Swish(), spectral_norm(nn.Conv2d(ch_out, ch_out, 1, 1, 0, bias=False)), nn.Sigmoid())

    def forward(self, feat_small: torch.Tensor, feat_big: torch.Tensor) -> torch.Tensor:
        return feat_big * self.main(feat_small)


class FastGANMapping(MappingNetwork):
    """FastGAN has no mapping network (the official ``DummyMapping``): ws = z as ``[N, 1, z_dim]``; class-conditional
    (``c_dim > 0``, the synthesis network's ``cond: true``): ws = ``[z, embed(c.argmax(1))]`` ``[N, 2, z_dim]``.

    ``z_dim`` defaults to the synthesis network's ``w_dim``; ``num_ws`` must be 1. Unconditional:
    a dataset with labels is refused (set ``data.use_labels: false``). ``truncation_psi`` is ignored with one
    warning, as the official generator ignores it (there is no w_avg, and the synthesis network normalises z).
    """

    def __init__(self,
                 z_dim: Annotated[Optional[int], Field(ge=1, description="size of the latent z, which is w itself "
                                                                         "(null: w_dim; official 256); not "
                                                                         "wired")] = None,
                 c_dim: Annotated[int, Field(ge=0, description="size of the label vector (0: unconditional); "
                                                               "wired by the builder from the dataset; labels need "
                                                               "the synthesis network's cond: true")] = 0,
                 w_dim: WDim = 256,
                 num_ws: Annotated[int, Field(ge=1, le=2, description="number of ws: 1 ([z]), 2 for a conditional "
                                                                      "synthesis network ([z, class embedding]); "
                                                                      "wired by the builder from the synthesis "
                                                                      "network")] = 1,
                 num_classes: Annotated[Optional[int], Field(ge=1, description="rows of the class embedding table "
                                                                               "(official num_classes, 1000 whatever "
                                                                               "the data; null: c_dim)")] = None):
        super().__init__()
        z_dim = int(w_dim if z_dim is None else z_dim)
        if z_dim != w_dim:
            raise ValueError(f"the FastGAN mapping passes z through: z_dim={z_dim} must equal the synthesis "
                             f"network's w_dim={w_dim}")
        if c_dim and num_ws != 2:
            raise ValueError(f"the data has labels (c_dim={c_dim}) but the synthesis network is unconditional: set "
                             f"generator.synthesis.cond: true (official --cond True) or data.use_labels: false")
        if not c_dim and num_ws != 1:
            raise ValueError(f"the synthesis network is conditional (num_ws={num_ws}) but the data has no labels: set "
                             f"data.use_labels: true or generator.synthesis.cond: false")
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, int(c_dim), int(w_dim), int(num_ws)
        if self.c_dim:
            rows = int(num_classes) if num_classes is not None else self.c_dim
            if rows < self.c_dim:
                raise ValueError(f"num_classes={rows} is below the data's c_dim={self.c_dim}")
            self.embed = nn.Embedding(rows, z_dim)
        self._warned_truncation = False  # truncation_psi != 1 is ignored with one warning

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False) -> torch.Tensor:
        if truncation_psi != 1 and not self._warned_truncation:  # the official FastGAN ignores truncation_psi too
            warnings.warn(f"FastGAN has no w_avg to truncate towards: truncation_psi={truncation_psi} is ignored",
                          stacklevel=2)
            self._warned_truncation = True
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be [N, {self.z_dim}], got {tuple(z.shape)}")
        if not self.c_dim:
            return z.unsqueeze(1)
        if c is None or c.ndim != 2 or tuple(c.shape) != (z.shape[0], self.c_dim):
            raise ValueError(f"c must be [{z.shape[0]}, {self.c_dim}], got {None if c is None else tuple(c.shape)}")
        return torch.stack([z, self.embed(c.argmax(1)).to(z.dtype)], dim=1)


class FastGANSynthesis(SynthesisNetwork):
    """FastGAN synthesis network (full or ``lite``), official names; see the module doc."""

    def __init__(self,
                 w_dim: Annotated[int, Field(ge=1, description="size of z (= w: there is no mapping; official z_dim "
                                                               "256); wired by the builder into the mapping "
                                                               "part")] = 256,
                 ngf: Annotated[int, Field(ge=1, description="channel multiplier: nfc[res] = multiplier[res] * ngf "
                                                             "(official ngf, 128)")] = 128,
                 lite: Annotated[bool, Field(description="the lite up blocks: one conv, no noise (official --cfg "
                                                         "fastgan_lite)")] = False,
                 cond: Annotated[bool, Field(description="class-conditional up blocks (conditional batch norm of the "
                                                         "class embedding the mapping puts in ws[:, 1]; official "
                                                         "--cond True, FastganSynthesisCond)")] = False,
                 output_tanh: Annotated[bool, Field(description="tanh on the output image (not official: the "
                                                                "official FastGAN ends without one)")] = False,
                 channel_max: Annotated[Optional[int], Field(ge=1, description="cap of the channels per "
                                                                               "resolution (not official; null: no "
                                                                               "cap)")] = None,
                 img_resolution: Annotated[int, Field(ge=16, le=1024, description="image side in pixels, a power of "
                                                                                  "two in 16..1024; wired by the "
                                                                                  "builder from the dataset")] = 256,
                 img_channels: ImgChannels = 3):
        super().__init__()
        r = int(img_resolution)
        if r not in NFC_MULTIPLIER or r < 16:
            raise ValueError(f"FastGAN img_resolution must be a power of two in 16..1024, got {img_resolution}")
        if ngf < 1 or w_dim < 1:
            raise ValueError(f"ngf and w_dim must be >= 1, got {ngf} and {w_dim}")
        self.cond = bool(cond)
        self.w_dim, self.num_ws, self.img_resolution, self.img_channels = int(w_dim), 2 if cond else 1, r, \
            int(img_channels)
        self.z_dim, self.lite, self.output_tanh = int(w_dim), bool(lite), bool(output_tanh)
        nfc = {k: min(int(v * ngf), channel_max) if channel_max else int(v * ngf) for k, v in NFC_MULTIPLIER.items()}
        if min(nfc[k] for k in NFC_MULTIPLIER if k <= max(r, 256 if r >= 128 else r)) < 1:
            raise ValueError(f"ngf={ngf} leaves no channels at {r} px")
        self.init = InitLayer(self.w_dim, channel=nfc[2], sz=4)
        built = max(r, 256) if r >= 128 else r  # the official 128 px network holds feat_256 / se_256 (unused)
        self.resolutions = [2 ** i for i in range(3, built.bit_length())]
        for res in self.resolutions:
            self.add_module(f"feat_{res}", UpBlockCond(nfc[res // 2], nfc[res], self.w_dim, self.lite) if self.cond
                            else UpBlock(nfc[res // 2], nfc[res], self.lite))
            if res in SE_SOURCES and res != 1024:
                self.add_module(f"se_{res}", SEBlock(nfc[SE_SOURCES[res]], nfc[res]))
        self.to_big = spectral_norm(nn.Conv2d(nfc[r], self.img_channels, 3, 1, 1, bias=True))

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", noise: Optional[dict] = None,
                **kwargs) -> torch.Tensor:
        if noise_mode not in ("random", "const", "none"):
            raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        noise = noise or {}

        def noise_for(block: str):
            def draw(name: str, x: torch.Tensor) -> torch.Tensor:
                path = f"{block}.{name}"
                shape = (x.shape[0], 1, x.shape[2], x.shape[3])
                if path in noise:
                    return noise[path].to(x.device, x.dtype)
                if noise_mode == "random":  # the official draw: global RNG, in forward order
                    return torch.randn(shape).to(x.device, x.dtype)
                if noise_mode == "none":
                    return x.new_zeros(shape)
                g = torch.Generator().manual_seed(zlib.crc32(path.encode()))
                return torch.randn(shape[1:], generator=g).expand(shape).to(x.device, x.dtype)
            return draw

        x = normalize_2nd_moment(ws[:, 0].to(torch.float32))
        y = ws[:, 1].to(torch.float32) if self.cond else None  # the class embedding
        feats = {4: self.init(x)}
        cur = feats[4]
        for res in self.resolutions:
            if res > self.img_resolution:
                break
            block = getattr(self, f"feat_{res}")
            cur = block(cur, y, noise_for(f"feat_{res}")) if self.cond else block(cur, noise_for(f"feat_{res}"))
            if res in SE_SOURCES and res != 1024:
                cur = getattr(self, f"se_{res}")(feats[SE_SOURCES[res]], cur)
            feats[res] = cur
        img = self.to_big(cur)
        return torch.tanh(img) if self.output_tanh else img
