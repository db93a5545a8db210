"""Our ops against the official code's recorded outputs (../shared/fixtures/nvlabs/ops).

Every case listed by every op manifest is run, so cases added later are covered
without touching this file, through each implementation (ref, cpp, cuda, triton).
Values within 1e-5, gradients within 1e-4.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from stylegan_core import ops

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("STYLEGAN_FIXTURES", REPO.parent / "shared" / "fixtures" / "nvlabs"))

# official function name -> our function
FUNCS = {
    "upfirdn2d.upfirdn2d": ops.upfirdn2d,
    "upfirdn2d.upsample2d": ops.upsample2d,
    "upfirdn2d.downsample2d": ops.downsample2d,
    "upfirdn2d.filter2d": ops.filter2d,
    "upfirdn2d.setup_filter": ops.setup_filter,
    "bias_act.bias_act": ops.bias_act,
    "filtered_lrelu.filtered_lrelu": ops.filtered_lrelu,
    "networks_stylegan3.SynthesisLayer.design_lowpass_filter": ops.design_lowpass_filter,
    "conv2d_resample.conv2d_resample": ops.conv2d_resample,
    "networks_stylegan2.modulated_conv2d": ops.modulated_conv2d,
    "networks_stylegan3.modulated_conv2d": ops.modulated_conv2d_sg3,
}
OUTPUTS = ("y",)
# positional input order per function (the rest are keyword arguments)
POSITIONAL = {
    "upfirdn2d.upfirdn2d": ["x", "f"], "upfirdn2d.upsample2d": ["x", "f"], "upfirdn2d.downsample2d": ["x", "f"],
    "upfirdn2d.filter2d": ["x", "f"], "bias_act.bias_act": ["x", "b"], "filtered_lrelu.filtered_lrelu": ["x"],
    "conv2d_resample.conv2d_resample": ["x", "w"], "networks_stylegan2.modulated_conv2d": ["x", "weight", "styles"],
    "networks_stylegan3.modulated_conv2d": ["x", "w", "s"],
}
KEYWORD_TENSORS = {"noise": "noise", "resample_filter": "resample_filter", "input_gain": "input_gain", "fu": "fu",
                   "fd": "fd", "b": "b", "f": "f"}


def _cases():
    index = FIXTURES / "index.json"
    if not index.is_file():
        return []
    files = [f["path"] for f in json.loads(index.read_text())["files"]]
    out = []
    for path in sorted(p for p in files if p.startswith("ops/") and p.endswith(".json")):
        manifest = json.loads((FIXTURES / path).read_text())
        for case in manifest["cases"]:
            out.append(pytest.param(path, case, id=f"{Path(path).stem}-{case['id']}"))
    return out


CASES = _cases()


def _impls() -> list:
    """``ref`` always; the compiled and Triton kernels where they can run (skipped with the reason otherwise). The
    Triton kernels run on CPU tensors under Triton's interpreter: tests/test_triton_ops.py runs the ``triton`` cases
    with TRITON_INTERPRET=1."""
    from stylegan_core.ops import _compiled, _triton

    cpp_ok = _compiled.available()
    cuda_ok = _compiled.supports("cuda") and torch.cuda.is_available()
    return [
        pytest.param("ref", id="ref"),
        pytest.param("cpp", id="cpp", marks=pytest.mark.skipif(
            not cpp_ok, reason=f"stylegan_core._C is not built ({_compiled.load_error()})")),
        pytest.param("cuda", id="cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
            not cuda_ok, reason="no GPU here: the CUDA kernels are compile-checked only"
            if _compiled.built_with_cuda() else "stylegan_core._C was built without CUDA")]),
        pytest.param("triton", id="triton", marks=pytest.mark.skipif(
            not _triton.supports("cpu"), reason="the Triton kernels run on the CPU under TRITON_INTERPRET=1 only "
                                                "(tests/test_triton_ops.py runs these cases so)")),
    ]
_LOADED: dict[str, dict[str, torch.Tensor]] = {}


def tensors(manifest_path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if manifest_path not in _LOADED:
        st = FIXTURES / manifest_path.replace(".json", ".safetensors")
        _LOADED[manifest_path] = {k: v.clone() for k, v in load_file(str(st)).items()}
    return _LOADED[manifest_path]


@pytest.mark.fixtures
@pytest.mark.skipif(not CASES, reason=f"fixtures not found at {FIXTURES} (set STYLEGAN_FIXTURES)")
@pytest.mark.parametrize("manifest_path,case", CASES)
@pytest.mark.parametrize("impl", _impls())
def test_op_matches_official(manifest_path, case, impl):
    fn_name = case["fn"]
    assert fn_name in FUNCS, f"no mapping for official function {fn_name}"
    fn = FUNCS[fn_name]
    T = tensors(manifest_path)
    keys = case["keys"]
    kwargs = {k: v for k, v in case.get("kwargs", {}).items() if k != "impl"}

    if fn_name in ("upfirdn2d.setup_filter",):
        f_in = case["f_in"]
        got = fn(f_in, **kwargs)
        torch.testing.assert_close(got, T[keys["f"]], atol=1e-7, rtol=0)
        return
    if fn_name.endswith("design_lowpass_filter"):
        got = fn(**kwargs)
        torch.testing.assert_close(got, T[keys["f"]], atol=1e-7, rtol=1e-6)
        return

    device = "cuda" if impl == "cuda" else "cpu"
    inputs = {name: T[key].clone().to(device) for name, key in keys.items() if name not in ("y", "r") and not
              (name.startswith("d") and name[1:] in keys)}
    if "resample_filter" not in inputs and "f" in inputs and fn_name == "networks_stylegan2.modulated_conv2d":
        inputs["resample_filter"] = inputs.pop("f")
    grads = {name[1:]: T[key] for name, key in keys.items() if name.startswith("d") and name[1:] in keys}
    for name in grads:
        inputs[name].requires_grad_(True)
    args = [inputs.pop(n) if n in inputs else None for n in POSITIONAL[fn_name]]
    call_kwargs = dict(kwargs)
    call_kwargs.update(inputs)
    if fn_name != "networks_stylegan3.modulated_conv2d":
        call_kwargs["impl"] = impl
    y = fn(*args, **call_kwargs)
    torch.testing.assert_close(y.cpu(), T[keys["y"]], atol=1e-5, rtol=0)
    (y * T[keys["r"]].to(device)).sum().backward()
    all_inputs = dict(zip(POSITIONAL[fn_name], args))
    all_inputs.update(inputs)
    for name, expected in grads.items():
        got = all_inputs[name].grad
        assert got is not None, f"no gradient for {name}"
        torch.testing.assert_close(got.cpu(), expected, atol=1e-4, rtol=0, msg=lambda m: f"d{name}: {m}")
