"""Official Projected GAN networks -> our parts (the ``convert_official_network`` hook).

Official snapshots (``network-snapshot-*.pkl``, ``best_model.pkl`` of autonomousvision/projected-gan)
pickle ``dict(G, D, G_ema, training_set_kwargs, progress)``. Their ``pg_modules`` networks are plain
``nn.Module`` objects (no ``torch_utils.persistence``), read by the safe unpickler as data-only
module records; a persistent variant (``_init_kwargs`` recorded) is read too. Recognised by the
weights' names:

* FastGAN / FastGAN-lite generator (``pg_modules.networks_fastgan.Generator``:
  ``synthesis.init.init.0.weight_orig``, ``synthesis.to_big.weight_orig``) ->
  ``projected_gan.fastgan_mapping`` + ``projected_gan.fastgan``. Its constructor arguments come from
  ``_init_kwargs`` when recorded, else from the recorded attributes (``z_dim``, ``c_dim``,
  ``img_resolution``, ``img_channels``) and the weights (``ngf`` = channels of the first layer / 32,
  ``lite`` = no second conv in the up blocks); both must agree. The names are ours already. The
  class-conditional FastGAN (``cond=1``, ``FastganSynthesisCond``: ``synthesis.embed.weight``, conditional
  batch norms) -> ``cond: true`` with the mapping's ``c_dim`` and ``num_classes`` (the table's rows); its class
  embedding ``synthesis.embed.weight`` becomes the mapping's ``mapping.embed.weight`` (our mapping puts the
  embedding in ws, see :mod:`.fastgan`).
* ``ProjectedDiscriminator`` (``feature_network.pretrained.*``, ``discriminator.mini_discs.*``) ->
  ``projected_gan.discriminator`` over ``core.timm`` ``tf_efficientnet_lite0`` (the only backbone of
  the official code); ``proj_type``, ``cout``, ``expand``, ``num_discs``, ``separable``, ``patch``,
  ``cond`` (class embedding rows, ``cmap_dim``) are read from the weights (and recorded
  ``backbone_kwargs`` when present), ``interp224`` from the recorded attribute (-> ``resize: 224``).
  Names are renamed by :func:`official_state_to_ours`.

How an imported discriminator gets its backbone: our discriminator rebuilds its frozen feature
network from the spec's ``weights:`` file (build artifacts never store frozen backbones), so the
importer puts the checkpoint's backbone weights (timm names, ``conv_stem.*``, ``bn1.*``, ``blocks.*``;
every name and shape checked against timm's ``tf_efficientnet_lite0`` built on the meta device first)
in a safetensors file **next to the pickle**, named
``<pickle stem>.<key>-backbone-<sha256[:16]>.safetensors``, where the hash is of the tensors (names,
dtypes, shapes, bytes), not of the file: importing the same pickle again finds the file and reuses it.
The spec names it as the feature network's ``weights``; the lock then records its absolute path and
sha256 as for any weights file. The file is written only once every network of the pickle converted,
and removed if building the networks then fails (:func:`~stylegan_core.api.imported_weights_file`). When
the pickle's folder is not writable the file goes to the ``imported`` folder of the cache.

Official behaviour that is not a constructor argument: ``diffaug=True`` makes the official D apply
DiffAugment inside its forward; here augmentation is the spec's ``augment`` section (a note says so).
Spectral-norm settings recorded in the hooks must be torch's defaults (1 power iteration, eps 1e-12).
"""
from __future__ import annotations

import re
from typing import Any, Optional

import torch

from stylegan_core.api import OfficialConversion, PersistentRecord, check_shapes, imported_weights_file, spectral_norms

from .fastgan import NFC_MULTIPLIER

BACKBONE = "tf_efficientnet_lite0"
_MINI = re.compile(r"^discriminator\.mini_discs\.(\d+)\.")


def _official_backbone_key(rest: str) -> str:
    """``layer0.3.0.bn1.weight`` -> ``model.blocks.0.0.bn1.weight``: the official stage split (layer0 =
    conv_stem, bn1, [act placeholder], blocks[0], blocks[1]; layer1 = blocks[2]; layer2 = blocks[3:5];
    layer3 = blocks[5:]) back to the timm model's own names."""
    layer, idx, *tail = rest.split(".")
    idx = int(idx)
    if layer == "layer0":
        head = {0: ["model", "conv_stem"], 1: ["model", "bn1"]}.get(idx, ["model", "blocks", str(idx - 3)])
        return ".".join(head + tail)
    start = {"layer1": 2, "layer2": 3, "layer3": 5}[layer]
    return ".".join(["model", "blocks", str(start + idx)] + tail)


def official_state_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official ``ProjectedDiscriminator`` state dict to this plugin's module names.

    ``feature_network.pretrained.layer*`` -> ``feature_network.model.*`` (timm names),
    ``feature_network.scratch.layer{i}_ccm`` / ``layer{i}_csm.out_conv`` -> ``projector.ccm.{i}`` /
    ``projector.csm.{i}``, ``discriminator.mini_discs.{k}.main.{j}...`` -> ``heads.{k}.blocks.{j}.{conv,norm,
    conv2,norm2}`` (down blocks; a DownBlockPatch's inner DownBlock is ``main.0.main.*``) or ``heads.{k}.out``
    (the final SN conv of an unconditional head), and ``cls`` / ``embed`` / ``embed_proj.0`` of conditional
    heads. An official FastGAN generator state dict (``synthesis.*``) already has our names.
    """
    if not any(k.startswith(("feature_network.", "discriminator.")) for k in state):
        return dict(state)
    out: dict[str, torch.Tensor] = {}
    patch_blocks = {tuple(k.split(".")[2:5]) for k in state
                    if k.startswith("discriminator.mini_discs.") and k.split(".")[5:7] == ["main", "0"]
                    and len(k.split(".")) > 7 and k.split(".")[7] == "main"}
    for k, v in state.items():
        parts = k.split(".")
        if k.startswith("feature_network.pretrained."):
            out["feature_network." + _official_backbone_key(".".join(parts[2:]))] = v
        elif k.startswith("feature_network.scratch."):
            layer, kind = parts[2].split("_")
            rest = parts[4:] if kind == "csm" else parts[3:]  # csm: layer{i}_csm.out_conv.*
            out[".".join(["projector", kind, layer[len("layer"):]] + rest)] = v
        elif k.startswith("discriminator.mini_discs."):
            kk, what = parts[2], parts[3]
            if what in ("cls", "embed"):
                out[".".join(["heads", kk, what] + parts[4:])] = v
            elif what == "embed_proj":  # Sequential(Linear, LeakyReLU): .0 is the Linear
                out[".".join(["heads", kk, "embed_proj"] + parts[5:])] = v
            elif what == "main":
                j, tail = parts[4], parts[5:]
                if tail[0] != "main":  # the final SN conv of an unconditional head
                    out[".".join(["heads", kk, "out"] + tail)] = v
                elif (kk, "main", j) in patch_blocks:
                    sub, rest = tail[1], tail[2:]
                    if sub == "0":  # the inner DownBlock: main.{0 conv, 1 BN}
                        name, rest = {"0": "conv", "1": "norm"}[rest[1]], rest[2:]
                    else:
                        name = {"1": "conv2", "2": "norm2"}[sub]
                    out[".".join(["heads", kk, "blocks", j, name] + rest)] = v
                else:
                    name = {"0": "conv", "1": "norm"}[tail[1]]
                    out[".".join(["heads", kk, "blocks", j, name] + tail[2:])] = v
            else:
                raise KeyError(f"unexpected key in an official Projected GAN state dict: {k!r}")
        else:
            raise KeyError(f"unexpected key in an official Projected GAN state dict: {k!r}")
    return out


def _check_spectral_norms(record: PersistentRecord) -> None:
    for path, sn in spectral_norms(record).items():
        iters, eps = sn.get("n_power_iterations", 1), sn.get("eps", 1e-12)
        if iters != 1 or abs(float(eps) - 1e-12) > 1e-18 or sn.get("name", "weight") != "weight":
            raise ValueError(f"spectral norm of {path or record.class_name} uses n_power_iterations={iters}, "
                             f"eps={eps}, name={sn.get('name')!r}; ours uses torch's defaults (1, 1e-12, 'weight')")


def _agree(name: str, values: list[tuple[str, Any]]) -> Any:
    """The one value of ``name`` given by several sources (recorded kwargs, attributes, weights); they must agree."""
    known = [(src, v) for src, v in values if v is not None]
    if not known:
        raise ValueError(f"cannot tell {name}: not recorded and not derivable from the weights")
    first = known[0][1]
    for src, v in known[1:]:
        if v != first:
            raise ValueError(f"{name} is {first!r} ({known[0][0]}) but {v!r} ({src})")
    return first


# -- FastGAN --------------------------------------------------------------------------------------------------
def _fastgan(record: PersistentRecord, state: dict[str, torch.Tensor]) -> Optional[OfficialConversion]:
    if "synthesis.init.init.0.weight_orig" not in state or "synthesis.to_big.weight_orig" not in state:
        return None
    if record.init_args:
        raise ValueError(f"positional constructor arguments {record.init_args!r} are not supported")
    kw = record.init_kwargs
    attrs = record.attributes
    syn = record.children().get("synthesis")
    syn_kw = kw.get("synthesis_kwargs") or {}
    if not isinstance(syn_kw, dict):
        raise ValueError(f"synthesis_kwargs is a {type(syn_kw).__name__}, expected a dict")
    cond = _agree("cond", [("recorded", bool(kw["cond"]) if "cond" in kw else None),
                           ("weights", "synthesis.embed.weight" in state),
                           ("synthesis class", syn.class_name == "FastganSynthesisCond" if syn is not None else None)])
    init_w = state["synthesis.init.init.0.weight_orig"]  # ConvTranspose2d(z_dim, 2 * nfc[4], 4): [z_dim, 2 nfc, 4, 4]
    rgb_w = state["synthesis.to_big.weight_orig"]
    if init_w.ndim != 4 or rgb_w.ndim != 4:
        raise ValueError(f"unexpected FastGAN weight shapes {list(init_w.shape)}, {list(rgb_w.shape)}")
    derived_ngf = int(init_w.shape[1]) // (2 * NFC_MULTIPLIER[4]) if init_w.shape[1] % (2 * NFC_MULTIPLIER[4]) == 0 \
        else None
    z_dim = _agree("z_dim", [("recorded", kw.get("z_dim")), ("attribute", attrs.get("z_dim")),
                             ("weights", int(init_w.shape[0]))])
    ngf = _agree("ngf", [("recorded", kw.get("ngf")), ("weights", derived_ngf)])
    res = _agree("img_resolution", [("recorded", kw.get("img_resolution")), ("attribute", attrs.get("img_resolution")),
                                    ("synthesis attribute", syn.attributes.get("img_resolution") if syn else None)])
    channels = _agree("img_channels", [("recorded", kw.get("img_channels")),
                                       ("attribute", attrs.get("img_channels")), ("weights", int(rgb_w.shape[0]))])
    second_conv = "synthesis.feat_8.conv2.weight_orig" if cond else "synthesis.feat_8.5.weight_orig"
    lite = _agree("lite", [("recorded", syn_kw.get("lite")), ("weights", second_conv not in state)])
    c_dim = int(kw.get("c_dim", attrs.get("c_dim", 0)) or 0)
    num_classes = None
    if cond:
        table = state["synthesis.embed.weight"]
        num_classes = _agree("num_classes", [("recorded", syn_kw.get("num_classes")), ("weights", int(table.shape[0]))])
        if not 0 < c_dim <= num_classes or table.ndim != 2 or int(table.shape[1]) != int(z_dim):
            raise ValueError(f"a conditional FastGAN needs 0 < c_dim <= num_classes and an embedding [num_classes, "
                             f"z_dim]: c_dim={c_dim}, num_classes={num_classes}, z_dim={z_dim}, embedding "
                             f"{list(table.shape)}")
    other = {k: v for k, v in syn_kw.items() if k != "lite" and not (cond and k == "num_classes")}
    if other:
        raise ValueError(f"official synthesis_kwargs not supported by projected_gan.fastgan: {other}")
    _check_spectral_norms(record)
    notes = ["FastGAN draws its noise at every call (the official noise_mode argument is ignored), as here"]
    if c_dim and not cond:
        notes.append(f"the official generator was built with c_dim={c_dim} but ignores labels (cond=0); here it "
                     "is unconditional: use data without labels")
        c_dim = 0
    mapping = {"type": "projected_gan.fastgan_mapping", "z_dim": int(z_dim), "c_dim": c_dim}
    synthesis = {"type": "projected_gan.fastgan", "w_dim": int(z_dim), "ngf": int(ngf), "lite": bool(lite),
                 "img_resolution": int(res), "img_channels": int(channels)}
    ours = official_state_to_ours(state)
    if cond:
        mapping["num_classes"] = int(num_classes)
        synthesis["cond"] = True
        ours["mapping.embed.weight"] = ours.pop("synthesis.embed.weight")  # the embedding is the mapping's here
        notes.append(f"class-conditional ({num_classes} embedding rows, c_dim {c_dim}): the class embedding "
                     "synthesis.embed is the mapping's here (ws = [z, embed(c)])")
    dims = {"img_resolution": int(res), "img_channels": int(channels), "c_dim": c_dim}
    summary = (f"{'conditional ' if cond else ''}FastGAN{'-lite' if lite else ''} generator ({res}x{res}x{channels}, "
               f"z_dim {z_dim}, ngf {ngf}{f', c_dim {c_dim}' if cond else ''})")
    return OfficialConversion(role="generator", sections={"generator": {"mapping": mapping, "synthesis": synthesis}},
                              state_dict=ours, dims=dims, summary=summary, notes=notes)


# -- the projected discriminator ------------------------------------------------------------------------------
def _check_backbone(tensors: dict[str, torch.Tensor]) -> None:
    """The backbone tensors have exactly the names and shapes of timm's ``tf_efficientnet_lite0`` stages
    (``conv_stem``, ``bn1``, ``blocks``), checked on the meta device before any file is written."""
    import timm

    check_shapes(lambda: timm.create_model(BACKBONE, pretrained=False), tensors, "backbone",
                 only=lambda k: k.startswith(("conv_stem.", "bn1.", "blocks.")), described_by=f"timm's {BACKBONE} has")


def _discriminator(record: PersistentRecord, state: dict[str, torch.Tensor]) -> Optional[OfficialConversion]:
    if not any(k.startswith("feature_network.pretrained.") for k in state) \
            or not any(_MINI.match(k) for k in state):
        return None
    if record.init_args:
        raise ValueError(f"positional constructor arguments {record.init_args!r} are not supported")
    kw = record.init_kwargs
    attrs = record.attributes
    bk = kw.get("backbone_kwargs") or {}
    fnet = record.children().get("feature_network")
    f_attrs = fnet.attributes if fnet is not None else {}
    stem = state.get("feature_network.pretrained.layer0.0.weight")
    if stem is None or tuple(stem.shape) != (32, 3, 3, 3):
        raise ValueError(f"the backbone is not {BACKBONE} (feature_network.pretrained.layer0.0.weight "
                         f"{None if stem is None else list(stem.shape)}, expected [32, 3, 3, 3])")
    has = lambda pat: any(re.search(pat, k) for k in state)  # noqa: E731
    derived_proj = 2 if has(r"^feature_network\.scratch\.layer\d_csm\.") else \
        1 if has(r"^feature_network\.scratch\.layer\d_ccm\.") else 0
    proj_type = _agree("proj_type", [("recorded", bk.get("proj_type")), ("attribute", f_attrs.get("proj_type")),
                                     ("weights", derived_proj)])
    cout = expand = None
    if proj_type:
        c0 = int(state["feature_network.scratch.layer0_ccm.weight"].shape[0])
        c1 = int(state["feature_network.scratch.layer1_ccm.weight"].shape[0])
        cout = _agree("cout", [("recorded", bk.get("cout")), ("attribute", f_attrs.get("cout")), ("weights", c0)])
        expand = _agree("expand", [("recorded", bk.get("expand")), ("attribute", f_attrs.get("expand")),
                                   ("weights", c1 == 2 * c0)])
    discs = sorted({int(_MINI.match(k).group(1)) for k in state if _MINI.match(k)})
    if discs != list(range(len(discs))):
        raise ValueError(f"mini-discriminators {discs}: expected 0..{len(discs) - 1}")
    num_discs = _agree("num_discs", [("recorded", bk.get("num_discs")), ("weights", len(discs))])
    separable = _agree("separable", [("recorded", bk.get("separable")), ("weights", has(r"\.depthwise\."))])
    patch = _agree("patch", [("recorded", bk.get("patch")),
                             ("weights", has(r"^discriminator\.mini_discs\.\d+\.main\.\d+\.main\.0\.main\."))])
    cond = _agree("cond", [("recorded", bool(bk["cond"]) if "cond" in bk else None),
                           ("weights", "discriminator.mini_discs.0.cls.weight_orig" in state)])
    interp224 = attrs.get("interp224", kw.get("interp224", True))
    diffaug = attrs.get("diffaug", kw.get("diffaug", True))
    _check_spectral_norms(record)
    ours = official_state_to_ours(state)
    prefix = "feature_network.model."
    backbone = {k[len(prefix):]: v for k, v in ours.items() if k.startswith(prefix)}
    _check_backbone(backbone)
    weights_file = imported_weights_file(record, "backbone", backbone, {"model": BACKBONE})
    weights = weights_file.path
    params: dict[str, Any] = {
        "type": "projected_gan.discriminator",
        "feature_network": {"type": "core.timm", "model": BACKBONE, "weights": str(weights), "resize": False},
        "resize": 224 if interp224 else None, "proj_type": int(proj_type), "num_discs": int(num_discs),
        "separable": bool(separable), "patch": bool(patch)}
    if proj_type:
        params.update(cout=int(cout), expand=bool(expand))
    notes = [f"the frozen {BACKBONE} backbone's weights are in {weights} (named by the spec; written once the import "
             "succeeds, reused when already there)"]
    if cond:
        params["embed_classes"] = int(state["discriminator.mini_discs.0.embed.weight"].shape[0])
        params["cmap_dim"] = int(state["discriminator.mini_discs.0.cls.weight_orig"].shape[0])
        notes.append("class-conditional heads: the data must have labels (c.argmax(1) indexes the embedding)")
    if diffaug:
        notes.append("the official D applies DiffAugment (color, translation, cutout) inside its forward; here "
                     "augmentation is the spec's augment section (projected_gan.diffaug to train as the official)")
    summary = (f"Projected GAN discriminator ({BACKBONE}, proj_type {proj_type}, {num_discs} "
               f"{'separable ' if separable else ''}{'patch ' if patch else ''}heads, "
               f"{'conditional' if cond else 'unconditional'}{', input resized to 224' if interp224 else ''})")
    return OfficialConversion(role="discriminator", sections={"discriminator": params}, state_dict=ours,
                              dims={}, summary=summary, notes=notes, files=[weights_file])


def convert_official_network(record: Any) -> Optional[OfficialConversion]:
    """An official Projected GAN FastGAN generator or ProjectedDiscriminator as projected_gan parts; else None."""
    state = record.state_dict()
    if record.class_name == "Generator":
        return _fastgan(record, state)
    if record.class_name == "ProjectedDiscriminator":
        return _discriminator(record, state)
    return None


__all__ = ["convert_official_network", "official_state_to_ours"]
