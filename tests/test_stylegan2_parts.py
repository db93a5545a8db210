"""StyleGAN2 parts: every architecture, conditioning, truncation, noise modes, losses and regularizers."""
from __future__ import annotations

import pytest
import torch

from stylegan_core.generator import Generator
from stylegan_core.interfaces import StepContext
from stylegan_plugins.stylegan2 import (R1, Discriminator, MappingNetwork, NonSaturatingLogistic, PathLength,
                                        StyleMixing, SynthesisNetwork)

SMALL = dict(channel_base=256, channel_max=16)


def make_G(arch="skip", c_dim=0, res=16):
    syn = SynthesisNetwork(w_dim=16, img_resolution=res, img_channels=3, architecture=arch, **SMALL)
    mapping = MappingNetwork(z_dim=8, c_dim=c_dim, w_dim=16, num_ws=syn.num_ws, num_layers=2)
    return Generator(mapping, syn)


@pytest.mark.parametrize("arch", ["orig", "skip", "resnet"])
def test_generator_architectures(arch):
    G = make_G(arch)
    assert G.num_ws == 6  # 16 px: b4 1 conv, b8 and b16 2 convs each, plus the last to-RGB
    img = G(torch.randn(2, 8), torch.zeros(2, 0), noise_mode="random")
    assert img.shape == (2, 3, 16, 16) and torch.isfinite(img).all()


@pytest.mark.parametrize("arch", ["orig", "skip", "resnet"])
@pytest.mark.parametrize("c_dim", [0, 5])
def test_discriminator_architectures(arch, c_dim):
    D = Discriminator(c_dim=c_dim, img_resolution=16, img_channels=3, architecture=arch, **SMALL)
    c = torch.eye(5)[:4] if c_dim else torch.zeros(4, 0)
    logits = D(torch.randn(4, 3, 16, 16), c)
    assert logits.shape == (4, 1) and torch.isfinite(logits).all()


def test_truncation_and_cutoff():
    G = make_G(c_dim=3)
    G.mapping.w_avg.normal_()
    z, c = torch.randn(2, 8), torch.eye(3)[:2]
    ws = G.mapping(z, c)
    ws0 = G.mapping(z, c, truncation_psi=0)
    assert torch.allclose(ws0, G.mapping.w_avg.expand_as(ws0))
    wsc = G.mapping(z, c, truncation_psi=0, truncation_cutoff=2)
    assert torch.allclose(wsc[:, :2], ws0[:, :2]) and torch.allclose(wsc[:, 2:], ws[:, 2:])
    before = G.mapping.w_avg.clone()
    G.mapping(z, c, update_emas=True)
    assert not torch.equal(before, G.mapping.w_avg)


def test_noise_modes():
    G = make_G()
    ws = G.mapping(torch.randn(1, 8), torch.zeros(1, 0))
    for layer in G.synthesis.modules():
        if hasattr(layer, "noise_strength"):
            layer.noise_strength.data.fill_(1.0)
    const1, const2 = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    rand1, rand2 = G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="random")
    none = G.synthesis(ws, noise_mode="none")
    assert torch.equal(const1, const2) and not torch.equal(rand1, rand2) and not torch.equal(none, const1)
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="loud")


def _ctx(G, D, n=4):
    def run_G(z, c, update_emas=False):
        ws = G.mapping(z, c, update_emas=update_emas)
        return G.synthesize(ws, noise_mode="random"), ws

    return StepContext(real_img=torch.randn(n, 3, 16, 16), real_c=torch.zeros(n, 0), gen_z=torch.randn(n, 8),
                       gen_c=torch.zeros(n, 0), run_G=run_G, run_D=D, G=G, D=D)


def test_losses_and_regularizers_backpropagate():
    G, D = make_G(), Discriminator(img_resolution=16, img_channels=3, **SMALL)
    ctx = _ctx(G, D)
    loss = NonSaturatingLogistic()
    lg = loss.accumulate("G", ctx)["loss/G"]
    ld = loss.accumulate("D", ctx)["loss/D"]
    assert torch.isfinite(lg) and torch.isfinite(ld)
    # R1 needs the gradient of a gradient through the ops: D's weights receive it
    r1 = R1(gamma=1.0).penalty(ctx)["reg/r1"]
    r1.backward()
    assert r1 > 0 and D.b16.conv0.weight.grad.abs().sum() > 0
    pl = PathLength(weight=2.0)
    val = pl.penalty(ctx)["reg/path_length"]
    val.backward()
    assert torch.isfinite(val) and G.synthesis.b8.conv0.weight.grad.abs().sum() > 0
    assert float(pl.state_dict()["pl_mean"]) > 0
    pl2 = PathLength()
    pl2.load_state_dict(pl.state_dict())
    assert torch.equal(pl2.pl_mean, pl.pl_mean)


def test_style_mixing_swaps_the_tail():
    G = make_G()
    z = torch.randn(2, 8)
    ws = G.mapping(z, torch.zeros(2, 0))
    torch.manual_seed(1)
    mixed = StyleMixing(prob=1.0).transform_ws(G, ws, z, torch.zeros(2, 0))
    same = (mixed == ws).all(dim=2).all(dim=0)
    assert same[0] and not same[-1] and same.sum() >= 1
    assert torch.equal(StyleMixing(prob=0.0).transform_ws(G, ws, z, torch.zeros(2, 0)), ws)
