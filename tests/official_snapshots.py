"""Writers of official-layout snapshots for the import tests (no official code involved).

* NVIDIA (StyleGAN2-ADA / StyleGAN3): networks pickle as ``torch_utils.persistence._reconstruct_persistent_obj(meta)``,
  ``meta = dict(type='class', version=6, module_src=..., class_name=..., state=<the module __dict__>)``, nested kwargs
  as ``dnnlib.util.EasyDict``, numpy float64 attributes, tensors as plain ``pickle`` writes them; the snapshot is
  ``dict(G, D, G_ema, augment_pipe, training_set_kwargs)`` (the fixtures README, section C).
* Projected GAN: ``pg_modules`` networks are plain ``nn.Module`` objects pickled under the official module names;
  the classes below rebuild the official module trees (same attribute names and nesting).
* StyleGAN-XL: persistent records, and whole snapshots as its training loop writes them with ``dill``.

Official module names exist in ``sys.modules`` only while a pickle is written. Every ``module_src`` (and every
function of the XL ViT stand-in) writes a canary file when executed: an import that ran it leaves the file behind.
Network weights come from the fixtures (``STYLEGAN_FIXTURES`` for NVIDIA's, ``STYLEGAN_FIXTURES_AV`` for
autonomousvision's); small networks of our own need none.
"""
from __future__ import annotations

import copy
import json
import os
import pickle
import sys
import types
from collections import OrderedDict
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils import spectral_norm

from nvlabs_nets import REPO, case_stems, load_case
from stylegan_plugins.stylegan2.importer import build_from_official


# ----------------------------------------------------------------------------------------------------------------
# NVIDIA snapshots


BIN = Path(sys.executable).parent


G_CLASS, D_CLASS = "training.networks_stylegan2.Generator", "training.networks_stylegan2.Discriminator"


# buffers of the official StyleGAN2 / StyleGAN3 networks; everything else in their state dicts is a parameter
BUFFERS = {"resample_filter", "noise_const", "w_avg", "freqs", "phases", "transform", "magnitude_ema", "up_filter",
           "down_filter"}


def _reconstruct_persistent_obj(meta):  # stand-in, only ever named in the stream, never called
    raise AssertionError("the official reconstructor must never run")


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"


_reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"


class EasyDict(dict):
    """A dict with attribute access, pickled under the official name dnnlib.util.EasyDict."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value


EasyDict.__module__ = "dnnlib.util"


@contextmanager
def official_names():
    """``torch_utils.persistence`` and ``dnnlib.util`` exist only while a pickle is written."""
    mods = {"torch_utils": types.ModuleType("torch_utils"),
            "torch_utils.persistence": types.ModuleType("torch_utils.persistence"),
            "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": types.ModuleType("dnnlib.util")}
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    mods["dnnlib.util"].EasyDict = EasyDict
    mods["torch_utils"].persistence, mods["dnnlib"].util = mods["torch_utils.persistence"], mods["dnnlib.util"]
    saved = {n: sys.modules.get(n) for n in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


class Persistent:
    """Pickles exactly as a torch_utils.persistence object: ``_reconstruct_persistent_obj(meta)``."""

    def __init__(self, meta: dict):
        self.meta = meta

    def __reduce__(self):
        return (_reconstruct_persistent_obj, (self.meta,), None)


class Payload:
    """A pickle payload: ``fn(*args)`` at load time."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return (self.fn, self.args)


def canary_source(canary: Path, module: str) -> str:
    """Stands for an official module's source: executing it writes the canary file."""
    return (f'"""{module} (stand-in): executing this source writes a canary file."""\n'
            f"import pathlib\npathlib.Path({str(canary)!r}).write_text('module_src was executed')\n"
            "class Generator: pass\nclass Discriminator: pass\n")


def _easy(v: Any) -> Any:
    if isinstance(v, dict):
        return EasyDict({k: _easy(x) for k, x in v.items()})
    return v


def _sub_class(role: str, path: str) -> str:
    leaf = path.rsplit(".", 1)[-1]
    if leaf in ("mapping", "synthesis"):
        return {"mapping": "MappingNetwork", "synthesis": "SynthesisNetwork"}[leaf]
    if leaf in ("affine", "embed", "fc", "out") or (leaf.startswith("fc") and leaf[2:].isdigit()):
        return "FullyConnectedLayer"
    if leaf.startswith("b") and leaf[1:].isdigit():
        if role == "D":
            return "DiscriminatorEpilogue" if leaf == "b4" else "DiscriminatorBlock"
        return "SynthesisBlock"
    if leaf == "torgb":
        return "ToRGBLayer"
    if leaf in ("conv0", "conv1") and role == "G":
        return "SynthesisLayer"
    return "Conv2dLayer"


def network_meta(class_name: str, init_kwargs: dict, state: dict[str, torch.Tensor], src: str,
                 extra_state: Optional[dict] = None) -> Persistent:
    """The persistence record tree of an official network from its flat ``state_dict``."""
    role = "D" if class_name.endswith("Discriminator") else "G"
    tree: dict = {"": ({}, {})}  # module path -> (params, buffers)
    for name, t in state.items():
        path, _, leaf = name.rpartition(".")
        parts = path.split(".") if path else []
        for i in range(len(parts) + 1):
            tree.setdefault(".".join(parts[:i]), ({}, {}))
        tree[path][1 if leaf in BUFFERS else 0][leaf] = t
    if role == "D" and "b4" in tree:
        tree["b4.mbstd"] = ({}, {})  # a module without weights, as the official MinibatchStdLayer

    def record(path: str) -> Persistent:
        params, buffers = tree[path]
        kids = sorted(p for p in tree if p and p.rpartition(".")[0] == path)
        st: dict[str, Any] = {
            "training": False,
            "_parameters": OrderedDict((k, torch.nn.Parameter(v.clone(), requires_grad=False))
                                       for k, v in params.items()),
            "_buffers": OrderedDict((k, v.clone()) for k, v in buffers.items()),
            "_non_persistent_buffers_set": set(),
            "_backward_pre_hooks": OrderedDict(), "_backward_hooks": OrderedDict(), "_is_full_backward_hook": None,
            "_forward_hooks": OrderedDict(), "_forward_hooks_with_kwargs": OrderedDict(),
            "_forward_hooks_always_called": OrderedDict(), "_forward_pre_hooks": OrderedDict(),
            "_forward_pre_hooks_with_kwargs": OrderedDict(), "_state_dict_hooks": OrderedDict(),
            "_state_dict_pre_hooks": OrderedDict(), "_load_state_dict_pre_hooks": OrderedDict(),
            "_load_state_dict_post_hooks": OrderedDict(),
            "_modules": OrderedDict((k.rpartition(".")[2], record(k)) for k in kids),
            "_init_args": (),
            "_init_kwargs": _easy(init_kwargs) if not path else {},
        }
        w = params.get("weight")
        if w is not None and w.ndim >= 2:  # numpy float64 attributes, as the official layers keep them
            st["weight_gain"] = np.float64(1 / np.sqrt(w[0].numel()))
            st["act_gain"] = np.float64(np.sqrt(2))
        if not path:
            st.update({k: v for k, v in init_kwargs.items() if not isinstance(v, dict)})
            # torch skips None entries and non-persistent buffers in state_dict(): so must the importer
            st["_parameters"]["unused_bias"] = None
            st["_buffers"]["scratch"] = torch.ones(3)
            st["_non_persistent_buffers_set"] = {"scratch"}
            if role == "G":
                st["block_sizes"] = np.array([4, 8, 16], dtype=np.int64)  # a numpy array attribute
            st.update(extra_state or {})
        return Persistent(dict(type="class", version=6, module_src=src, class_name=_sub_class(role, path)
                               if path else class_name.rsplit(".", 1)[-1], state=st))

    return record("")


def snapshot_bytes(networks: dict[str, Any], canary: Path, extra: Optional[dict] = None) -> bytes:
    """An official snapshot: ``networks`` maps G / D / G_ema to ``(class_name, init_kwargs, state)`` or a
    ready object; training_set_kwargs is a plain dict as training_loop.py writes it."""
    srcs = {"G": canary_source(canary, "training/networks_stylegan2.py")}
    srcs["D"] = srcs["G"]  # one module source, memoised once in the stream like the official pickles
    data: dict[str, Any] = {}
    for key, net in networks.items():
        if isinstance(net, tuple):
            cls, kw, state = net
            data[key] = network_meta(cls, kw, state, srcs["D" if key == "D" else "G"])
        else:
            data[key] = net
    data.setdefault("augment_pipe", None)
    data.setdefault("training_set_kwargs", dict(class_name="training.dataset.ImageFolderDataset",
                                                path="/datasets/example.zip", use_labels=False, max_size=1797,
                                                xflip=False, resolution=32, random_seed=0))
    data.update(extra or {})
    with official_names():
        return pickle.dumps(data, protocol=4)  # training_loop.py: pickle.dump(snapshot_data, f), default protocol


def write_snapshot(path: Path, networks: dict[str, Any], canary: Path, extra: Optional[dict] = None) -> Path:
    path.write_bytes(snapshot_bytes(networks, canary, extra))
    return path


def small_kwargs(role: str, c_dim: int = 0, res: int = 8, channels: int = 3) -> dict:
    if role == "G":
        return dict(z_dim=8, c_dim=c_dim, w_dim=8, img_resolution=res, img_channels=channels,
                    mapping_kwargs={"num_layers": 1}, channel_base=64, channel_max=8, num_fp16_res=0,
                    conv_clamp=None, architecture="skip")
    return dict(c_dim=c_dim, img_resolution=res, img_channels=channels, architecture="resnet", channel_base=64,
                channel_max=8, num_fp16_res=0, conv_clamp=None, epilogue_kwargs={"mbstd_group_size": 2})


def small_network(role: str, seed: int = 0, **dims) -> tuple[str, dict, dict[str, torch.Tensor]]:
    """``(class_name, init_kwargs, state)`` of a small official-layout network built with our classes."""
    cls = G_CLASS if role == "G" else D_CLASS
    kw = small_kwargs(role, **dims)
    torch.manual_seed(seed)
    net = build_from_official(cls, kw)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return cls, kw, {k: v.detach().clone() for k, v in net.state_dict().items()}


STEMS = case_stems("nets/sg2_")


fixture = load_case


def fixture_network(stem: str) -> tuple[str, str, dict, dict[str, torch.Tensor]]:
    """``(role, class_name, init_kwargs, state)`` of a fixture case."""
    manifest, T = fixture(stem)
    prefix = manifest.get("state_prefix", "state.")
    state = {k[len(prefix):]: v for k, v in T.items() if k.startswith(prefix)}
    role = "D" if manifest["class_name"].endswith("Discriminator") else "G"
    return role, manifest["class_name"], manifest["init_kwargs"], state


def dims_of(kw: dict) -> tuple[int, int, int]:
    return int(kw["c_dim"]), int(kw["img_resolution"]), int(kw["img_channels"])


def snapshot_for_case(stem: str) -> dict[str, Any]:
    """The case's network under its official key; the partner is a fixture of the same dims, else a small one."""
    role, cls, kw, state = fixture_network(stem)
    c_dim, res, ch = dims_of(kw)
    partner = None
    for other in STEMS:
        o_role, o_cls, o_kw, o_state = fixture_network(other)
        if o_role != role and dims_of(o_kw) == dims_of(kw):
            partner = (o_cls, o_kw, o_state)
            break
    if partner is None:
        partner = small_network("D" if role == "G" else "G", c_dim=c_dim, res=res, channels=ch)
    G, D = ((cls, kw, state), partner) if role == "G" else (partner, (cls, kw, state))
    G_raw = (G[0], G[1], {k: v + 1 for k, v in G[2].items()})  # raw G differs from G_ema: must not be imported
    return {"G": G_raw, "D": D, "G_ema": G}


def digits_can_stand_in(c_dim: int, res: int, channels: int) -> bool:
    return channels in (1, 3) and c_dim in (0, 10) and 8 <= res <= 256


def data_spec(tmp_path: Path, c_dim: int, res: int, channels: int) -> Optional[Path]:
    """None when the embedded digits can stand in for the data; else a spec with an image folder that matches."""
    if digits_can_stand_in(c_dim, res, channels):
        return None
    from PIL import Image

    folder = tmp_path / "data"
    folder.mkdir()
    n = max(c_dim, 2)
    labels = []
    for i in range(n):
        arr = np.full((res, res, channels), 40 * i % 255, dtype=np.uint8)
        Image.fromarray(arr[:, :, 0] if channels == 1 else arr).save(folder / f"img{i}.png")
        labels.append([f"img{i}.png", i % max(c_dim, 1)])
    (folder / "dataset.json").write_text(json.dumps({"labels": labels}))
    spec = tmp_path / "data.yaml"
    spec.write_text(f"extends: {REPO / 'stylegan_core' / 'spec' / 'default.yaml'}\n"
                    f"data: {{type: core.image_folder, path: {folder}, use_labels: {str(c_dim > 0).lower()}}}\n"
                    "metrics: []\n")
    return spec


def small_snapshot(**overrides) -> dict:
    nets = {"G": small_network("G", seed=1), "D": small_network("D", seed=2), "G_ema": small_network("G", seed=3)}
    nets.update(overrides)
    return nets


def sg3_snapshot(stem: str) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    manifest, T = load_case(stem)
    prefix = manifest.get("state_prefix", "state.")
    state = {k[len(prefix):]: v for k, v in T.items() if k.startswith(prefix)}
    kw = manifest["init_kwargs"]
    G = (manifest["class_name"], kw, state)
    D = small_network("D", c_dim=kw["c_dim"], res=kw["img_resolution"], channels=kw["img_channels"])
    G_raw = (G[0], kw, {k: v + 1 for k, v in state.items()})  # the raw G must not be the one imported
    return {"G": G_raw, "D": D, "G_ema": G}, T, state


# ----------------------------------------------------------------------------------------------------------------
# Projected GAN and StyleGAN-XL snapshots (autonomousvision)


AV_FIXTURES = Path(os.environ.get("STYLEGAN_FIXTURES_AV", REPO.parent / "shared" / "fixtures" / "av"))


def av_case_params(prefix: str) -> list:
    index = AV_FIXTURES / "index.json"
    if not index.is_file():
        return [pytest.param(None, id="no-fixtures", marks=pytest.mark.skip(
            reason=f"no autonomousvision fixtures at {AV_FIXTURES} (set STYLEGAN_FIXTURES_AV)"))]
    files = json.loads(index.read_text())
    paths = [f["path"] for f in (files["files"] if isinstance(files, dict) else files)]
    stems = sorted({p[:-len(".json")] for p in paths if p.startswith(prefix) and p.endswith(".json")})
    stems = [s for s in stems if "class_path" in json.loads((AV_FIXTURES / f"{s}.json").read_text())]
    return [pytest.param(s, id=s) for s in stems]


@lru_cache(maxsize=None)
def load_av_case(stem: str) -> tuple[dict, dict[str, torch.Tensor]]:
    manifest = json.loads((AV_FIXTURES / f"{stem}.json").read_text())
    tensors: dict[str, torch.Tensor] = {}
    for fn in dict.fromkeys(list(manifest.get("state_files", [])) + list(manifest.get("files", []))):
        assert (AV_FIXTURES / fn).is_file(), f"{stem}: {fn} is listed but missing"
        tensors.update({k: v.clone() for k, v in load_file(str(AV_FIXTURES / fn)).items()})  # clone: aligned storage
    return manifest, tensors


def av_fixture_state(stem: str) -> dict[str, torch.Tensor]:
    return {k[len("state."):]: v.clone() for k, v in load_av_case(stem)[1].items() if k.startswith("state.")}


class GLU(nn.Module):
    pass


class Swish(nn.Module):
    pass


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))


class InitLayer(nn.Module):
    def __init__(self, nz: int, channel: int):
        super().__init__()
        self.init = nn.Sequential(spectral_norm(nn.ConvTranspose2d(nz, channel * 2, 4, 1, 0, bias=False)),
                                  nn.BatchNorm2d(channel * 2), GLU())


def up_block(cin: int, cout: int, lite: bool) -> nn.Sequential:
    layers = [nn.Upsample(scale_factor=2, mode="nearest"), spectral_norm(nn.Conv2d(cin, cout * 2, 3, 1, 1, bias=False))]
    if lite:
        return nn.Sequential(*layers, nn.BatchNorm2d(cout * 2), GLU())
    return nn.Sequential(*layers, NoiseInjection(), nn.BatchNorm2d(cout * 2), GLU(),
                         spectral_norm(nn.Conv2d(cout, cout * 2, 3, 1, 1, bias=False)), NoiseInjection(),
                         nn.BatchNorm2d(cout * 2), GLU())


class SEBlock(nn.Module):
    def __init__(self, ch_in: int, ch_out: int):
        super().__init__()
        self.main = nn.Sequential(nn.AdaptiveAvgPool2d(4), spectral_norm(nn.Conv2d(ch_in, ch_out, 4, 1, 0, bias=False)),
                                  Swish(), spectral_norm(nn.Conv2d(ch_out, ch_out, 1, 1, 0, bias=False)), nn.Sigmoid())


MULT = {2: 16, 4: 16, 8: 8, 16: 4, 32: 2, 64: 2, 128: 1, 256: 0.5}


class FastganSynthesis(nn.Module):
    def __init__(self, ngf: int, z_dim: int, nc: int, img_resolution: int, lite: bool):
        super().__init__()
        assert img_resolution in (128, 256), "the writer covers 128 and 256 px"
        self.img_resolution, self.z_dim = img_resolution, z_dim
        nfc = {k: int(v * ngf) for k, v in MULT.items()}
        self.init = InitLayer(z_dim, nfc[2])
        for r in (8, 16, 32, 64, 128, 256):
            setattr(self, f"feat_{r}", up_block(nfc[r // 2], nfc[r], lite))
        self.se_64, self.se_128, self.se_256 = SEBlock(nfc[4], nfc[64]), SEBlock(nfc[8], nfc[128]), SEBlock(nfc[16],
                                                                                                             nfc[256])
        self.to_big = spectral_norm(nn.Conv2d(nfc[img_resolution], nc, 3, 1, 1, bias=True))


class DummyMapping(nn.Module):
    pass


class Generator(nn.Module):
    def __init__(self, z_dim=256, c_dim=0, w_dim=0, img_resolution=256, img_channels=3, ngf=128, cond=0,
                 mapping_kwargs={}, synthesis_kwargs={}):  # noqa: B006 (the official signature)
        super().__init__()
        assert not cond, "the writer covers unconditional FastGAN"
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.mapping = DummyMapping()
        self.synthesis = FastganSynthesis(ngf, z_dim, img_channels, img_resolution, **synthesis_kwargs)


class SeparableConv2d(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = spectral_norm(nn.Conv2d(cin, cin, 3, groups=cin, bias=False, padding=1))
        self.pointwise = spectral_norm(nn.Conv2d(cin, cout, 1, bias=False))


class DownBlock(nn.Module):
    def __init__(self, cin: int, cout: int, separable: bool):
        super().__init__()
        if separable:
            self.main = nn.Sequential(SeparableConv2d(cin, cout), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True),
                                      nn.AvgPool2d(2, 2))
        else:
            self.main = nn.Sequential(spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.BatchNorm2d(cout),
                                      nn.LeakyReLU(0.2, True))


HEAD_CHANNELS = {4: 512, 8: 512, 16: 256, 32: 128, 64: 64, 128: 64, 256: 32, 512: 16, 1024: 8}


def _downs(cin: int, start: int, separable: bool) -> list:
    nfc = dict(HEAD_CHANNELS)
    nfc[start] = cin
    blocks = []
    while start > 8:
        blocks.append(DownBlock(nfc[start], nfc[start // 2], separable))
        start //= 2
    return blocks


class SingleDisc(nn.Module):
    def __init__(self, nc: int, start_sz: int, separable: bool):
        super().__init__()
        self.main = nn.Sequential(*_downs(nc, start_sz, separable),
                                  spectral_norm(nn.Conv2d(512, 1, 4, 1, 0, bias=False)))


class SingleDiscCond(nn.Module):
    def __init__(self, nc: int, start_sz: int, separable: bool, c_dim: int = 1000, cmap_dim: int = 64):
        super().__init__()
        self.cmap_dim = cmap_dim
        self.main = nn.Sequential(*_downs(nc, start_sz, separable))
        self.cls = spectral_norm(nn.Conv2d(512, cmap_dim, 4, 1, 0, bias=False))
        self.embed = nn.Embedding(c_dim, 128)
        self.embed_proj = nn.Sequential(nn.Linear(128, cmap_dim), nn.LeakyReLU(0.2, inplace=True))


class MultiScaleD(nn.Module):
    def __init__(self, channels, resolutions, num_discs=1, cond=0, separable=False, **kwargs):
        super().__init__()
        Disc = SingleDiscCond if cond else SingleDisc
        pairs = zip(channels[:num_discs], resolutions[:num_discs])
        self.mini_discs = nn.ModuleDict({str(i): Disc(c, r, separable) for i, (c, r) in enumerate(pairs)})


class FeatureFusionBlock(nn.Module):
    def __init__(self, features: int, expand: bool = False):
        super().__init__()
        self.deconv, self.align_corners, self.expand = False, True, expand
        self.out_conv = nn.Conv2d(features, features // 2 if expand else features, 1, 1, 0, bias=True)
        self.skip_add = nn.quantized.FloatFunctional()


class F_RandomProj(nn.Module):
    def __init__(self, backbone: nn.Module, cout=64, expand=True, proj_type=2, **kwargs):
        super().__init__()
        assert proj_type == 2, "the writer covers proj_type 2"
        self.proj_type, self.cout, self.expand = proj_type, cout, expand
        pre = nn.Module()
        pre.layer0 = nn.Sequential(backbone.conv_stem, backbone.bn1, nn.Identity(), *backbone.blocks[0:2])
        pre.layer1 = nn.Sequential(*backbone.blocks[2:3])
        pre.layer2 = nn.Sequential(*backbone.blocks[3:5])
        pre.layer3 = nn.Sequential(*backbone.blocks[5:9])
        self.pretrained = pre
        cin = [24, 40, 112, 320]
        ccm = [cout * 2 ** i if expand else cout for i in range(4)]
        scratch = nn.Module()
        for i in range(4):
            setattr(scratch, f"layer{i}_ccm", nn.Conv2d(cin[i], ccm[i], 1, 1, 0, bias=True))
        for i in (3, 2, 1, 0):
            setattr(scratch, f"layer{i}_csm", FeatureFusionBlock(ccm[i], expand=expand and i > 0))
        scratch.CHANNELS = [cout, cout, cout * 2, cout * 4] if expand else [cout] * 4
        self.scratch = scratch
        self.CHANNELS, self.RESOLUTIONS = scratch.CHANNELS, [128, 64, 32, 16]
        pre.CHANNELS, pre.RESOLUTIONS = self.CHANNELS, self.RESOLUTIONS


class ProjectedDiscriminator(nn.Module):
    def __init__(self, backbone: nn.Module, diffaug=True, interp224=True, backbone_kwargs={}):  # noqa: B006
        super().__init__()
        self.diffaug, self.interp224 = diffaug, interp224
        self.feature_network = F_RandomProj(backbone, **backbone_kwargs)
        self.discriminator = MultiScaleD(self.feature_network.CHANNELS, self.feature_network.RESOLUTIONS,
                                         **backbone_kwargs)


PG_MODULES = {"pg_modules.blocks": [GLU, Swish, NoiseInjection, InitLayer, SEBlock, SeparableConv2d, DownBlock,
                                    FeatureFusionBlock],
              "pg_modules.networks_fastgan": [FastganSynthesis, DummyMapping, Generator],
              "pg_modules.discriminator": [SingleDisc, SingleDiscCond, MultiScaleD, ProjectedDiscriminator],
              "pg_modules.projector": [F_RandomProj]}


@contextmanager
def pg_names():
    """The ``pg_modules.*`` names exist in ``sys.modules`` only while a pickle is written."""
    mods = {"pg_modules": types.ModuleType("pg_modules")}
    for name, classes in PG_MODULES.items():
        mods[name] = types.ModuleType(name)
        for c in classes:
            setattr(mods[name], c.__name__, c)
    saved = {n: sys.modules.get(n) for n in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


@lru_cache(maxsize=1)
def _timm_lite0() -> nn.Module:
    import timm

    return timm.create_model("tf_efficientnet_lite0", pretrained=False)


def pg_network(stem: str) -> nn.Module:
    """The case's official module tree with the fixture state loaded strictly, as the training loop pickles it."""
    manifest = load_av_case(stem)[0]
    kw = copy.deepcopy(manifest["constructor_kwargs"])
    if manifest["kind"] == "fastgan_generator":
        net = Generator(**kw)
    else:
        net = ProjectedDiscriminator(copy.deepcopy(_timm_lite0()), **kw)
    net.load_state_dict(av_fixture_state(stem), strict=True)
    return net.eval().requires_grad_(False)


def persistent(net: nn.Module, class_name: str, init_kwargs: dict, src: str) -> Persistent:
    """``net`` as a torch_utils.persistence object (its sub-modules stay plain modules)."""
    state = dict(net.__dict__, _init_args=(), _init_kwargs=EasyDict(init_kwargs))
    return Persistent(dict(type="class", version=6, module_src=src, class_name=class_name, state=state))


def raw_copy(net: nn.Module) -> nn.Module:
    """The raw training G: differs from G_ema (which must be the one imported)."""
    g = copy.deepcopy(net)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    return g


def pg_snapshot(path: Path, canary: Path, networks: dict[str, Any]) -> Path:
    progress = {"cur_nimg": torch.LongTensor([1000]), "cur_tick": torch.LongTensor([1]),
                "batch_idx": torch.LongTensor([10]), "best_fid": 9999}
    with pg_names():
        path.write_bytes(snapshot_bytes(networks, canary, extra={"progress": progress}))
    return path


XL_BUFFERS = {"w_avg", "transform", "freqs", "phases", "magnitude_ema", "up_filter", "down_filter"}


def _xl_class(path: str) -> str:
    leaf = path.rsplit(".", 1)[-1]
    named = {"mapping": "MappingNetwork", "synthesis": "SynthesisNetwork", "input": "SynthesisInput"}
    if leaf in named:
        return named[leaf]
    return "SynthesisLayer" if leaf.startswith("L") and leaf[1].isdigit() else "FullyConnectedLayer"


def xl_meta(class_name: str, init_kwargs: dict, state: dict[str, torch.Tensor], src: str,
            sub_kwargs: dict[str, dict], attrs: dict[str, dict]) -> Persistent:
    """The persistence record tree of an official StyleGAN-XL generator from its flat ``state_dict``;
    ``mapping.embed`` is a real ``nn.Embedding`` (pickled plainly, as the official code loads it)."""
    tree: dict[str, tuple[dict, dict]] = {"": ({}, {})}
    for name, t in state.items():
        path, _, leaf = name.rpartition(".")
        parts = path.split(".") if path else []
        for i in range(len(parts) + 1):
            tree.setdefault(".".join(parts[:i]), ({}, {}))
        tree[path][1 if leaf in XL_BUFFERS else 0][leaf] = t

    def record(path: str):
        params, buffers = tree[path]
        if path == "mapping.embed":
            emb = nn.Embedding(*params["weight"].shape)
            with torch.no_grad():
                emb.weight.copy_(params["weight"])
            return emb.requires_grad_(False)
        kids = sorted(p for p in tree if p and p.rpartition(".")[0] == path)
        st = dict(nn.Module().__dict__)  # the hook dicts etc. of this torch version
        st.update(training=False,
                  _parameters=OrderedDict((k, nn.Parameter(v.clone(), requires_grad=False)) for k, v in params.items()),
                  _buffers=OrderedDict((k, v.clone()) for k, v in buffers.items()),
                  _modules=OrderedDict((k.rpartition(".")[2], record(k)) for k in kids),
                  _init_args=(), _init_kwargs=EasyDict(sub_kwargs.get(path, {}) if path else init_kwargs))
        st.update(attrs.get(path, {}))
        return Persistent(dict(type="class", version=6, module_src=src, state=st,
                               class_name=class_name if not path else _xl_class(path)))

    return record("")


def xl_networks(stem: str) -> dict[str, Any]:
    """``(record, init_kwargs)`` of the case as the official code pickles it."""
    manifest = load_av_case(stem)[0]
    state = av_fixture_state(stem)
    kw = copy.deepcopy(manifest["constructor_kwargs"])
    cls = manifest["class_path"].rsplit(".", 1)[-1]
    layer_names = manifest.get("layer_names") or sorted({k.split(".")[1] for k in state if k.startswith("synthesis.L")})
    if cls == "SuperresGenerator":
        stem_kw = copy.deepcopy(load_av_case(manifest["stem_case"])[0]["constructor_kwargs"])
        kw["path_stem"] = "/no/such/dir/stem.pkl"  # the stem pickle it was built from (not needed to import)
        syn_kw = {k: v for k, v in stem_kw.items() if k not in ("z_dim", "c_dim", "mapping_kwargs")}
        map_kw = dict(z_dim=stem_kw["z_dim"], c_dim=stem_kw["c_dim"], w_dim=stem_kw["w_dim"], num_ws=9,
                      **stem_kw.get("mapping_kwargs", {}))
        top = dict(z_dim=stem_kw["z_dim"], c_dim=stem_kw["c_dim"], w_dim=stem_kw["w_dim"], img_resolution=kw[
            "img_resolution"], img_channels=3, num_ws=manifest["num_ws"], up_factor=kw["up_factor"],
                   head_layer_names=manifest.get("head_layer_names", []), path_stem=kw["path_stem"])
    else:
        syn_kw = {k: v for k, v in kw.items() if k not in ("z_dim", "c_dim", "mapping_kwargs")}
        map_kw = dict(z_dim=kw["z_dim"], c_dim=kw["c_dim"], w_dim=kw["w_dim"], num_ws=manifest["num_ws"],
                      **kw.get("mapping_kwargs", {}))
        top = {k: v for k, v in kw.items() if not isinstance(v, dict)}
    attrs = {"": top, "synthesis": {"layer_names": layer_names, "num_ws": manifest["num_ws"]},
             "mapping": {"num_ws": manifest["num_ws"]}}
    return {"cls": cls, "kw": kw, "state": state, "sub_kwargs": {"mapping": map_kw, "synthesis": syn_kw},
            "attrs": attrs}


def xl_vit_module(canary: Path) -> types.ModuleType:
    """A stand-in for StyleGAN-XL's ``feature_networks/vit.py`` (same names); every function writes the canary when
    called, so a reader that created and ran a dill-pickled function (the hook is pickled by value, its code object
    included) would leave it behind."""
    write = f"open({str(canary)!r}, 'w').write"
    src = (f'"""feature_networks/vit.py (stand-in): its functions write a canary file when called."""\n'
           "from torch import nn\n\nactivations = {}\n\n\n"
           "class Slice(nn.Module):\n    def __init__(self, start_index=1):\n        super().__init__()\n"
           "        self.start_index = start_index\n\n\n"
           "class Transpose(nn.Module):\n    def __init__(self, dim0, dim1):\n        super().__init__()\n"
           "        self.dim0, self.dim1 = dim0, dim1\n\n\n"
           f"def forward_flex(self, x):\n    {write}('forward_flex ran')\n\n\n"
           f"def _resize_pos_embed(self, posemb, gs_h, gs_w):\n    {write}('_resize_pos_embed ran')\n\n\n"
           "def get_activation(name):\n    def hook(model, input, output):\n"
           f"        {write}('hook ran')\n        activations[name] = output\n    return hook\n")
    mod = types.ModuleType("feature_networks.vit")
    mod.__file__ = "feature_networks/vit.py"
    exec(compile(src, mod.__file__, "exec"), mod.__dict__)  # safe: the test's own stand-in source
    return mod


class XLRandomProj(nn.Module):
    """StyleGAN-XL's ``pg_modules.projector.F_RandomProj`` around a ViT (``_make_vit_b16_backbone``'s layout)."""

    def __init__(self, vit: types.ModuleType):
        super().__init__()
        from timm.models.deit import VisionTransformerDistilled

        model = VisionTransformerDistilled(img_size=224, patch_size=16, embed_dim=24, depth=12, num_heads=2,
                                           num_classes=10)
        pre = nn.Module()
        pre.model = model
        for i, h in enumerate([2, 5, 8, 11]):
            model.blocks[h].register_forward_hook(vit.get_activation(str(i + 1)))
        vit.activations["1"] = torch.zeros(1, 196, 24)  # what the last forward left behind
        pre.activations = vit.activations
        feats = [4, 8, 16, 24]
        resample = [nn.ConvTranspose2d(4, 4, 4, 4), nn.ConvTranspose2d(8, 8, 2, 2), None, nn.Conv2d(24, 24, 3, 2, 1)]
        for i, r in enumerate(resample):
            layers = [vit.Slice(2), vit.Transpose(1, 2), nn.Unflatten(2, torch.Size([14, 14])), nn.Conv2d(24, feats[i], 1)]
            setattr(pre, f"layer{i + 1}", nn.Sequential(*layers, *([r] if r is not None else [])))
        model.start_index, model.patch_size = 2, [16, 16]
        model.forward_flex = types.MethodType(vit.forward_flex, model)
        model._resize_pos_embed = types.MethodType(vit._resize_pos_embed, model)
        self.pretrained = pre
        self.proj_type, self.backbone, self.cout, self.expand = 2, "deit_base_distilled_patch16_224", 4, True
        self.normstats = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
        scratch = nn.Module()
        for i, c in enumerate(feats):
            setattr(scratch, f"layer{i}_ccm", nn.Conv2d(c, 4, 1))
            setattr(scratch, f"layer{i}_csm", FeatureFusionBlock(4))
        self.scratch = scratch
        self.CHANNELS, self.RESOLUTIONS = [4, 4, 4, 4], [64, 32, 16, 8]


class XLProjectedDiscriminator(nn.Module):
    """StyleGAN-XL's ``pg_modules.discriminator.ProjectedDiscriminator``: per backbone a projector and heads."""

    def __init__(self, vit: types.ModuleType):
        super().__init__()
        self.backbones, self.diffaug, self.interp224 = ["deit_base_distilled_patch16_224"], True, False
        feat = XLRandomProj(vit)
        self.feature_networks = nn.ModuleDict({self.backbones[0]: feat})
        self.discriminators = nn.ModuleDict({self.backbones[0]: MultiScaleD(feat.CHANNELS, [8, 8, 8, 8], num_discs=2)})


@contextmanager
def xl_names(vit: types.ModuleType):
    """The official module names of StyleGAN-XL's D exist in ``sys.modules`` only while a snapshot is written."""
    classes = {"pg_modules.discriminator": {"ProjectedDiscriminator": XLProjectedDiscriminator,
                                            "MultiScaleD": MultiScaleD, "SingleDisc": SingleDisc},
               "pg_modules.projector": {"F_RandomProj": XLRandomProj},
               "pg_modules.blocks": {c.__name__: c for c in PG_MODULES["pg_modules.blocks"]}}
    mods = {"pg_modules": types.ModuleType("pg_modules"), "feature_networks": types.ModuleType("feature_networks"),
            "feature_networks.vit": vit}
    saved_names = {}
    for name, members in classes.items():
        mods[name] = types.ModuleType(name)
        for qual, c in members.items():
            saved_names[c] = (c.__module__, c.__name__, c.__qualname__)
            c.__module__, c.__name__, c.__qualname__ = name, qual, qual
            setattr(mods[name], qual, c)
    for name, mod in mods.items():  # packages hold their modules, as imported ones do (dill looks them up)
        parent, _, leaf = name.rpartition(".")
        if parent:
            setattr(mods[parent], leaf, mod)
    saved = {n: sys.modules.get(n) for n in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m
        for c, (module, name, qual) in saved_names.items():
            c.__module__, c.__name__, c.__qualname__ = module, name, qual


def xl_generator(stem: str, canary: Path, shift: float = 0.0) -> Persistent:
    """The case's generator as the XL training loop builds it: ``c_dim`` and ``img_channels`` recorded with the
    other arguments (also for a SuperresGenerator, which ignores them); numpy arrays among the layers' attributes
    (dill writes them with its ``_create_array``)."""
    net = xl_networks(stem)
    c_dim = int(load_av_case(stem)[1]["in.c"].shape[1])
    kw = dict(net["kw"], c_dim=c_dim, img_channels=3)
    src = canary_source(canary, "training/networks_stylegan3_resetting.py")
    state = {k: v + shift for k, v in net["state"].items()} if shift else net["state"]
    G = xl_meta(net["cls"], kw, state, src, net["sub_kwargs"], net["attrs"])
    syn = G.meta["state"]["_modules"]["synthesis"].meta["state"]
    for name, layer in syn["_modules"].items():
        if name.startswith("L"):
            size = int(name.split("_")[1])
            layer.meta["state"].update(in_size=np.array([size, size], dtype=np.int64),
                                       out_size=np.array([size, size], dtype=np.int64))
    return G


def xl_dill_snapshot(path: Path, stem: str, canary: Path) -> Path:
    import dill

    vit = xl_vit_module(canary)
    torch.manual_seed(0)
    D = XLProjectedDiscriminator(vit).eval().requires_grad_(False)
    data = {"G": xl_generator(stem, canary, shift=1.0), "D": D, "G_ema": xl_generator(stem, canary),
            "augment_pipe": None, "training_set_kwargs": {"class_name": "training.dataset.ImageFolderDataset",
                                                          "path": "/datasets/imagenet32.zip", "use_labels": True},
            "progress": {"cur_nimg": torch.LongTensor([1000]), "best_fid": 9999.0}}
    with official_names(), xl_names(vit):
        path.write_bytes(dill.dumps(data))  # training/training_loop.py: dill.dump(snapshot_data, f)
    return path


for _mod, _classes in PG_MODULES.items():
    for _c in _classes:
        _c.__module__ = _mod
