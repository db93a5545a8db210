"""StyleGAN3 generators loaded with official weights reproduce the official outputs and gradients.

Reads the folder named by ``STYLEGAN_FIXTURES`` (default ``<repo>/../shared/fixtures/nvlabs``)
and runs every ``nets/sg3*`` case its ``index.json`` lists: the network is built from the
manifest's ``init_kwargs`` with our classes, the official ``state.*`` tensors are loaded with
``strict=True``, and every stored output (``out.*``: ws, images, images under the user
transform ``in.transform``) and gradient (``grad.ws``, ``grad.state.*``) is recomputed. The
filter schedule is checked against the per-layer numbers the official networks carry (layer
names ``L{i}_{size}_{channels}``, weight shapes, filter taps, radial or separable filters).

Tolerance: ``max|ours - official| <= 1e-4 * max(1, max|official|)`` per tensor, i.e. 1e-4
absolute for tensors of magnitude up to 1 and 1e-4 relative (to the tensor's largest value,
the README's definition of "rel") above that.
"""
from __future__ import annotations

import re

import pytest
import torch

from nvlabs_nets import GRAD_TOL, OUT_KEY, case_params, check, check_parameter_gradients, load_case, network, psi
from stylegan_plugins.stylegan3.importer import build_from_official
from stylegan_plugins.stylegan3.networks import Generator
from stylegan_plugins.stylegan3.schedule import filter_schedule, layer_specs

pytestmark = pytest.mark.fixtures

CASES = case_params("nets/sg3")


def case(stem: str) -> tuple[dict, dict[str, torch.Tensor], torch.nn.Module]:
    return network(stem, build_from_official)


def generator_output(G: Generator, key: str, T: dict[str, torch.Tensor]) -> torch.Tensor:
    """Recompute a stored output ``out.{ws,img}_psi<P>[_cutoff<N>][_const|_none][_transform]``.

    ``_transform``: rendered with ``synthesis.input.transform`` set to ``in.transform`` (then
    restored), as the fixtures' generator did; an image without a noise suffix uses 'const'
    (StyleGAN3 has no noise inputs: the mode is accepted and ignored).
    """
    m = OUT_KEY.match(key)
    assert m and not m["unfused"], f"no recipe for the stored output {key!r}: extend this test"
    cutoff = int(m["cutoff"]) if m["cutoff"] else None
    ws = G.mapping(T["in.z"], T["in.c"], truncation_psi=psi(m["psi"]), truncation_cutoff=cutoff)
    if m["what"] == "ws":
        assert not m["transform"] and not m["noise"], f"no recipe for the stored output {key!r}"
        return ws
    transform = G.synthesis.input.transform
    saved = transform.clone()
    if m["transform"]:
        transform.copy_(T["in.transform"])
    try:
        return G.synthesis(ws, noise_mode=m["noise"] or "const")
    finally:
        transform.copy_(saved)


@pytest.mark.parametrize("stem", CASES)
def test_sg3_outputs_match_official(stem):
    manifest, T, net = case(stem)
    assert isinstance(net, Generator), f"{manifest['class_name']}: no recipe for this network class"
    outs = sorted(k for k in T if k.startswith("out."))
    assert outs, f"{stem} stores no outputs"
    assert not any(k.startswith("in.noise_used.") for k in T), "StyleGAN3 has no noise inputs: extend this test"
    with torch.no_grad():
        for key in outs:
            check(generator_output(net, key, T), T[key], key)
        if "out.img_psi07_const" in T:  # documented as bit-identical to the one-call generator
            check(net(T["in.z"], T["in.c"], truncation_psi=0.7, noise_mode="const"), T["out.img_psi07_const"],
                  "G(z, c, psi=0.7)")
    assert torch.equal(net.synthesis.input.transform, T["state.synthesis.input.transform"])  # restored


@pytest.mark.parametrize("stem", CASES)
def test_sg3_gradients_match_official(stem):
    manifest, T, net = case(stem)
    assert isinstance(net, Generator), f"{manifest['class_name']}: no recipe for this network class"
    # grad.ws, grad.state.*: ws = mapping(z, c, psi=1); img = synthesis(ws, 'const'); d sum(img * r_img).
    # In float64: a float32 gradient through StyleGAN3's layers moves by ~1e-3 relative with the order of
    # PyTorch's conv reductions, which depends on the CPU (oneDNN picks kernels by instruction set); in
    # float64 the comparison measures only the fixture's own float32 error (up to 1.06e-3 relative).
    net = net.double()
    ws = net.mapping(T["in.z"].double(), T["in.c"].double(), truncation_psi=1)
    ws.retain_grad()
    (net.synthesis(ws, noise_mode="const") * T["in.r_img"].double()).sum().backward()
    check(ws.grad, T["grad.ws"], "grad.ws", GRAD_TOL)
    check_parameter_gradients(net, T)


_LAYER = re.compile(r"^state\.synthesis\.(L(?P<idx>\d+)_(?P<size>\d+)_(?P<ch>\d+))\.weight$")


@pytest.mark.parametrize("stem", CASES)
def test_filter_schedule_matches_official_layers(stem):
    """The pure schedule functions give the official per-layer numbers: names (index, size,
    channels), input channels and kernel of every weight, up/down filter taps and which down
    filters are radial (2-D), the Fourier input's channels, and num_ws."""
    manifest, _ = load_case(stem)
    kw = dict(manifest["init_kwargs"])
    shapes = manifest["tensors"]
    official = {}
    for key, shape in shapes.items():
        m = _LAYER.match(key)
        if m:
            official[int(m["idx"])] = (m[1], int(m["size"]), int(m["ch"]), tuple(shape))
    assert official, f"{stem}: no synthesis layers in the manifest"
    sched_kw = {k: kw[k] for k in ("img_channels", "channel_base", "channel_max", "num_layers", "num_critical",
                                   "first_cutoff", "first_stopband", "last_stopband_rel", "margin_size",
                                   "num_fp16_res") if k in kw}
    sched = filter_schedule(kw["img_resolution"], **sched_kw)
    layers = layer_specs(sched, **{k: kw[k] for k in ("conv_kernel", "filter_size", "lrelu_upsampling",
                                                      "use_radial_filters") if k in kw})
    assert sorted(official) == [spec.index for spec in layers]
    assert sched.layer_names() == [official[i][0] for i in sorted(official)]
    for spec in layers:
        name, size, ch, wshape = official[spec.index]
        assert (spec.name, spec.out_size, spec.out_channels) == (name, size, ch)
        assert wshape == (spec.out_channels, spec.in_channels, spec.conv_kernel, spec.conv_kernel), name
        up = shapes.get(f"state.synthesis.{name}.up_filter")
        down = shapes.get(f"state.synthesis.{name}.down_filter")
        assert (up is None) == (spec.up_taps == 1) and (down is None) == (spec.down_taps == 1), name
        if up is not None:
            assert up == [spec.up_taps], name
        if down is not None:
            assert down == ([spec.down_taps] * 2 if spec.down_radial else [spec.down_taps]), name
    assert shapes["state.synthesis.input.freqs"] == [sched.channels[0], 2]
    assert manifest["info"]["num_ws"] == sched.num_layers + 2
