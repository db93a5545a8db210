"""``stylegan-run DIR export``: a trained generator as a file that other programs run or load.

Formats (:data:`FORMATS`):

- ``onnx``: an ONNX model from :func:`torch.onnx.export` (the dynamo exporter) that runs in any ONNX runtime
  without stylegan-core or PyTorch. Every op is a standard ONNX operator: the network is traced with
  ``ops.default_impl('ref')``, so the compiled ops (``torch.ops.stylegan_core.*``) are replaced by their
  plain-PyTorch reference formulation, which lowers to ONNX's Conv, Pad, Resize-free index arithmetic etc.
- ``torch-export``: a ``.pt2`` archive from :func:`torch.export.export` / :func:`torch.export.save`, reloaded by
  :func:`torch.export.load` with PyTorch alone (only ``aten`` ops, same tracing as ONNX).
- ``safetensors``: G_ema's tensors (parameters and persistent buffers, as a snapshot holds them: frozen feature
  networks such as a pretrained text encoder come from their own weights files) with the resolved spec in the
  file's metadata; :func:`load_generator_file` rebuilds the generator from that file (stylegan-core and the
  generator's plugins installed, no build folder or training data needed). It is the weights, not a program.

The exported program maps ``z`` ``[N, z_dim]`` (and, for a conditional generator, ``c`` ``[N, c_dim]``: the
one-hot class or label vector; for a text-conditioned generator ``text_embedding`` ``[N, c_dim]``, the text
encoder's output) to ``img`` ``[N, C, H, W]``, float in [-1, 1] (to uint8 as the official code writes PNGs:
``(img * 127.5 + 128).clip(0, 255)``). Truncation (psi, cutoff) and the noise mode are fixed at export; ``N``
is fixed too (``batch``): the modulated convolutions are grouped convolutions with one group per sample, and an
ONNX Conv's ``group`` is a constant attribute.

What cannot be exported is refused with :class:`ExportError`, one line saying why: ``noise_mode='random'``
(the draws of PyTorch's generator cannot be reproduced by another runtime, so the export could not be checked);
a text encoder's tokenizer (Python code, not tensor operations: the exported model starts from the text
embedding, and :func:`text_embeddings` computes embeddings of prompts with the run's own encoder); a network
whose forward does not trace (e.g. control flow on tensor values).

Every export is checked before it is written: the exported program, run by onnxruntime / reloaded by
``torch.export.load`` / rebuilt from the file, against this package's forward (the default ops, as ``generate``
runs it) on ``batch`` seeded inputs; a maximum absolute difference above ``tolerance`` (1e-4) is an error and
nothing is written.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

#: format name -> file suffix
FORMATS: dict[str, str] = {"onnx": ".onnx", "torch-export": ".pt2", "safetensors": ".safetensors"}
#: noise modes an export can fix ('random' cannot be reproduced outside PyTorch)
NOISE_MODES = ("const", "none")
#: the largest max |exported - ours| accepted (the official fixtures' tolerance)
TOLERANCE = 1e-4
#: standard ONNX operator domains (anything else would need a custom runtime library)
ONNX_DOMAINS = ("", "ai.onnx")
#: the only torch operator namespaces an exported ``.pt2`` may call (PyTorch's own)
TORCH_NAMESPACES = ("aten", "prims")
#: the ``format`` metadata of every file :func:`export` writes (ONNX metadata_props, the .pt2 archive's
#: stylegan_core.json, safetensors metadata)
FORMAT_TAG = "stylegan-core.generator"


class ExportError(ValueError):
    """The generator, an option or a missing package prevents the export (one line saying why)."""


# ---------------------------------------------------------------------------------------------------------------
# The exported function


def condition_kind(G: nn.Module) -> str:
    """``'text'`` (a text-conditioned generator: c is the text embedding), ``'class'`` (c_dim > 0) or ``'none'``."""
    from .generate import is_text_conditioned

    if is_text_conditioned(G):
        return "text"
    return "class" if G.c_dim else "none"


class _Exported(nn.Module):
    """``G`` with truncation and noise mode fixed: the function the exported file computes."""

    def __init__(self, G: nn.Module, truncation_psi: float, truncation_cutoff: Optional[int], noise_mode: str):
        super().__init__()
        self.G = G
        self.truncation_psi = float(truncation_psi)
        self.truncation_cutoff = truncation_cutoff
        self.noise_mode = noise_mode

    def run(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.G(z, c, truncation_psi=self.truncation_psi, truncation_cutoff=self.truncation_cutoff,
                      noise_mode=self.noise_mode)


class _FromZ(_Exported):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.run(z, z.new_zeros([z.shape[0], 0]))


class _FromZC(_Exported):
    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.run(z, c)


class _FromZText(_Exported):
    def forward(self, z: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
        return self.run(z, text_embedding)


_WRAPPERS = {"none": _FromZ, "class": _FromZC, "text": _FromZText}
_INPUT_NAMES = {"none": ["z"], "class": ["z", "c"], "text": ["z", "text_embedding"]}


def text_encoder(G: nn.Module) -> nn.Module:
    """The text encoder inside a text-conditioned generator (the first :class:`~stylegan_core.interfaces.TextEncoder`
    among its modules)."""
    from ..interfaces import TextEncoder

    for m in G.modules():
        if isinstance(m, TextEncoder):
            return m
    raise ExportError("the generator is text-conditioned but holds no text encoder to embed prompts with")


@torch.no_grad()
def text_embeddings(G: nn.Module, prompts: Sequence[str]) -> torch.Tensor:
    """The embeddings ``[len(prompts), c_dim]`` an exported text-conditioned generator takes, from the run's own
    text encoder (tokenizer included)."""
    return text_encoder(G)(list(prompts)).detach().to(torch.float32).cpu()


@torch.no_grad()
def check_inputs(G: nn.Module, kind: str, batch: int, prompts: Sequence[str] = ()) -> list[torch.Tensor]:
    """The inputs the check runs: z of seeds ``0..batch-1`` (as ``generate`` draws them), classes ``i % c_dim``
    one-hot, or the embeddings of ``prompts`` (repeated) / seeded unit vectors for a text-conditioned generator."""
    from .generate import seed_z

    z = seed_z(G, range(batch))
    if kind == "none":
        return [z]
    if kind == "class":
        c = torch.zeros([batch, G.c_dim])
        c[torch.arange(batch), torch.arange(batch) % G.c_dim] = 1
        return [z, c]
    if prompts:
        emb = text_embeddings(G, [prompts[i % len(prompts)] for i in range(batch)])
    else:
        emb = torch.randn([batch, G.c_dim], generator=torch.Generator().manual_seed(0))
        emb = emb / emb.norm(dim=1, keepdim=True)
    return [z, emb]


# ---------------------------------------------------------------------------------------------------------------
# Export


@dataclass
class Exported:
    """One written file: its format, path, the check's max |difference| and the file's description."""

    format: str
    path: Path
    max_abs_diff: float
    info: dict[str, Any] = field(default_factory=dict)


def _need(modules: Sequence[str], fmt: str) -> None:
    import importlib

    missing = []
    for m in modules:
        try:
            importlib.import_module(m)
        except ImportError:
            missing.append(m)
    if missing:
        raise ExportError(f"--format {fmt} needs {', '.join(missing)}: pip install 'stylegan-core[export]'")


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("[", "Traceback")):
            return f"{type(e).__name__}: {line[:300]}"
    return type(e).__name__


def _trace(wrapper: nn.Module, inputs: list[torch.Tensor]) -> "torch.export.ExportedProgram":
    """``torch.export`` of the wrapper on the reference ops; an untraceable network is an :class:`ExportError`."""
    from .. import ops

    try:
        with ops.default_impl("ref"), torch.no_grad():
            return torch.export.export(wrapper, tuple(inputs), strict=False)
    except Exception as e:  # noqa: BLE001  (any tracing failure is reported as the one reason export stops)
        raise ExportError(f"the generator could not be traced by torch.export ({_first_line(e)}); its forward must "
                          f"be tensor operations without Python control flow on tensor values") from None


def check_torch_ops(ep: "torch.export.ExportedProgram") -> None:
    """Refuse a program calling operators outside PyTorch's own namespaces (a compiled op of this package or a
    plugin would make the file unusable without it)."""
    foreign = sorted({str(n.target) for n in ep.graph.nodes if n.op == "call_function"
                      and isinstance(n.target, torch._ops.OpOverload) and n.target.namespace not in TORCH_NAMESPACES})
    if foreign:
        raise ExportError(f"the traced generator calls operators that need their own library: {', '.join(foreign)} "
                          f"(give them a reference formulation in plain PyTorch ops, selected by "
                          f"ops.default_impl('ref'))")


def check_onnx_domains(path: Path) -> None:
    """Refuse an ONNX file with operators outside the standard domains (or local functions)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)

    def nodes(graph: Any):
        for n in graph.node:
            yield n
            for a in n.attribute:
                if a.g is not None and len(a.g.node):
                    yield from nodes(a.g)
                for g in a.graphs:
                    yield from nodes(g)

    foreign = sorted({f"{n.domain}::{n.op_type}" for n in nodes(model.graph) if n.domain not in ONNX_DOMAINS})
    if foreign or len(model.functions):
        names = foreign or [f"{f.domain}::{f.name}" for f in model.functions]
        raise ExportError(f"the ONNX model uses operators outside the standard domains: {', '.join(names)}")


def _max_diff(a: Union[torch.Tensor, np.ndarray], b: torch.Tensor) -> float:
    a = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a).to(torch.float64)
    if tuple(a.shape) != tuple(b.shape):
        raise ExportError(f"the exported program returned shape {tuple(a.shape)}, expected {tuple(b.shape)}")
    return float((a - b.to(torch.float64)).abs().max())


def _temp_beside(path: Path, suffix: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def _commit(tmp: Path, path: Path) -> None:
    """Move the checked temporary file into place, readable as the umask allows (a file meant for others)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def _write_onnx(ep: Any, inputs: list[torch.Tensor], names: list[str], path: Path, meta: dict[str, str],
                expected: torch.Tensor, tolerance: float) -> float:
    _need(["onnx", "onnxscript", "onnxruntime"], "onnx")
    import onnxruntime as ort

    tmp = _temp_beside(path, ".onnx")
    try:
        try:
            prog = torch.onnx.export(ep, tuple(inputs), dynamo=True, input_names=names, output_names=["img"],
                                     optimize=True, verbose=False)
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"torch.onnx.export failed: {_first_line(e)}") from None
        prog.model.metadata_props.update(meta)
        prog.save(str(tmp))
        check_onnx_domains(tmp)
        sess = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        out = sess.run(["img"], {n: x.numpy() for n, x in zip(names, inputs)})[0]
        diff = _max_diff(out, expected)
        if not diff <= tolerance:
            raise ExportError(f"onnxruntime's output differs from stylegan-core's by up to {diff:.3g} (more than "
                              f"{tolerance:g}); nothing written")
        _commit(tmp, path)
        return diff
    finally:
        tmp.unlink(missing_ok=True)


def _write_pt2(ep: Any, inputs: list[torch.Tensor], path: Path, meta: dict[str, str], expected: torch.Tensor,
               tolerance: float) -> float:
    check_torch_ops(ep)
    tmp = _temp_beside(path, ".pt2")
    try:
        torch.export.save(ep, str(tmp), extra_files={"stylegan_core.json": json.dumps(meta)})
        loaded = torch.export.load(str(tmp))
        with torch.no_grad():
            out = loaded.module()(*inputs)
        diff = _max_diff(out, expected)
        if not diff <= tolerance:
            raise ExportError(f"the reloaded torch.export program differs from stylegan-core's forward by up to "
                              f"{diff:.3g} (more than {tolerance:g}); nothing written")
        _commit(tmp, path)
        return diff
    finally:
        tmp.unlink(missing_ok=True)


def _write_safetensors(G: nn.Module, wrapper_cls: type, settings: dict[str, Any], inputs: list[torch.Tensor],
                       path: Path, meta: dict[str, str], expected: torch.Tensor, tolerance: float,
                       spec_text: str) -> float:
    from ..freezing import trainable_state_dict
    from ..io import atomic_save_safetensors

    tmp = _temp_beside(path, ".safetensors")
    try:
        atomic_save_safetensors(trainable_state_dict(G), tmp, metadata={**meta, "spec": spec_text})
        G2, _ = load_generator_file(tmp)
        with torch.no_grad():
            out = wrapper_cls(G2, **settings)(*inputs)
        diff = _max_diff(out, expected)
        if not diff <= tolerance:
            raise ExportError(f"the generator rebuilt from the file differs by up to {diff:.3g}; nothing written")
        _commit(tmp, path)
        return diff
    finally:
        tmp.unlink(missing_ok=True)


def export(G: nn.Module, formats: Sequence[str], out_stem: Path, *, truncation_psi: float = 1.0,
           truncation_cutoff: Optional[int] = None, noise_mode: str = "const", batch: int = 1,
           prompts: Sequence[str] = (), source: str = "", spec_text: str = "", tolerance: float = TOLERANCE,
           log: Callable[[str], Any] = lambda s: None) -> list[Exported]:
    """Export ``G`` (eval mode, on the CPU) in each of ``formats`` to ``out_stem`` + the format's suffix; each
    file checked against ``G``'s forward before it is written (see the module docstring). ``prompts``: for a
    text-conditioned generator, the prompts whose embeddings the check uses. ``source`` (e.g. the snapshot's
    name) and ``spec_text`` (the resolved spec, kept in the safetensors file) are recorded."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ExportError(f"unknown format {unknown[0]!r}: expected one of {', '.join(FORMATS)}")
    if noise_mode not in NOISE_MODES:
        raise ExportError(f"--noise-mode {noise_mode} cannot be exported: an exported program cannot reproduce "
                          f"PyTorch's random draws (so it could not be checked); use const (the generator's fixed "
                          f"noise buffers) or none")
    if batch < 1:
        raise ExportError(f"--batch must be at least 1, got {batch}")
    G = G.to("cpu").eval()
    kind = condition_kind(G)
    if prompts and kind != "text":
        raise ExportError("--text was given but the generator is not text-conditioned")
    settings = dict(truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff, noise_mode=noise_mode)
    wrapper_cls = _WRAPPERS[kind]
    wrapper = wrapper_cls(G, **settings).eval()
    names = _INPUT_NAMES[kind]
    inputs = check_inputs(G, kind, batch, prompts)
    with torch.no_grad():
        expected = wrapper(*inputs)
    info = {
        "inputs": {n: list(x.shape) for n, x in zip(names, inputs)},
        "output": {"img": list(expected.shape), "range": [-1, 1]},
        "truncation_psi": truncation_psi, "truncation_cutoff": truncation_cutoff, "noise_mode": noise_mode,
        "condition": kind, "z": "np.random.RandomState(seed).randn(z_dim) as float32 (as generate draws it)",
        "source": source,
    }
    meta = {"format": FORMAT_TAG, "stylegan_core": json.dumps(info)}
    out_stem = Path(out_stem)
    results: list[Exported] = []
    ep = None
    for fmt in dict.fromkeys(formats):
        path = out_stem.with_name(out_stem.name + FORMATS[fmt])
        if fmt == "safetensors":
            diff = _write_safetensors(G, wrapper_cls, settings, inputs, path, meta, expected, tolerance, spec_text)
        else:
            if ep is None:
                if fmt == "onnx":
                    _need(["onnx", "onnxscript", "onnxruntime"], "onnx")
                log("tracing the generator with torch.export (reference ops) ...")
                ep = _trace(wrapper, inputs)
            if fmt == "onnx":
                log("converting to ONNX ...")
                diff = _write_onnx(ep, inputs, names, path, meta, expected, tolerance)
            else:
                diff = _write_pt2(ep, inputs, path, meta, expected, tolerance)
        results.append(Exported(fmt, path, diff, info))
    return results


# ---------------------------------------------------------------------------------------------------------------
# Reading a safetensors export


def load_generator_file(path: Union[str, Path], plugins: Any = None) -> tuple[nn.Module, dict[str, Any]]:
    """The generator of a safetensors file written by :func:`export` (format ``safetensors``), rebuilt from the
    spec in its metadata with the installed plugins and loaded with its tensors (checked: names, shapes, dtypes);
    returns ``(G, info)`` with the export's description (truncation, noise mode, inputs, source)."""
    from ..build import build_model
    from ..freezing import load_trainable_state_dict
    from ..io import WeightsFileError, check_state, read_safetensors
    from ..plugins import load_plugins
    from ..spec import load_spec_text

    path = Path(path)
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT_TAG or "spec" not in meta:
        raise WeightsFileError(f"{path}: not a generator exported by stylegan-run ... export --format safetensors "
                               f"(no {FORMAT_TAG!r} metadata)")
    ps = plugins if plugins is not None else load_plugins()
    spec = load_spec_text(meta["spec"], registry=ps.registry, file=f"{path}[spec]")
    G = build_model(spec, ps.registry, parts={"G"}).G
    check_state(path, G, tensors, "", "exported from another spec?")
    load_trainable_state_dict(G, tensors)
    try:
        info = json.loads(meta.get("stylegan_core", "{}"))
    except json.JSONDecodeError:
        info = {}
    return G.eval(), info


__all__ = ["ExportError", "Exported", "FORMATS", "NOISE_MODES", "TOLERANCE", "check_onnx_domains",
           "check_torch_ops", "condition_kind", "export", "load_generator_file", "text_embeddings"]
