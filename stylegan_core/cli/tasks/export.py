"""``stylegan-run DIR export``: G_ema of a snapshot as an ONNX model, a torch.export program or a safetensors file."""
from __future__ import annotations

import argparse
from pathlib import Path

from .base import Context, Task, bad_input_exits_2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", dest="formats", action="append", required=True, metavar="FORMAT",
                   choices=("onnx", "torch-export", "safetensors"),
                   help="onnx, torch-export (.pt2) or safetensors; repeat for several (one trace serves onnx and "
                        "torch-export)")
    p.add_argument("--snapshot", default="latest", metavar="WHICH",
                   help="latest (default), model (model.safetensors), a kimg (e.g. 128), a snapshot name or the "
                        "path of a snapshot's .safetensors")
    g = p.add_argument_group("fixed in the exported model (defaults: the spec's run section)")
    g.add_argument("--trunc", type=float, metavar="PSI", help="truncation psi (run.truncation_psi)")
    g.add_argument("--trunc-cutoff", type=int, metavar="N", help="truncate only the first N ws (run.truncation_cutoff)")
    g.add_argument("--noise-mode", choices=("const", "none", "random"), default="const",
                   help="const (default): the generator's fixed noise; none; random cannot be exported")
    g.add_argument("--batch", type=int, default=1, metavar="N", help="images per call (default 1)")
    p.add_argument("--text", action="append", default=[], metavar="PROMPT",
                   help="text-conditioned generators: also write the embeddings of these prompts "
                        "(<out>.text.safetensors: 'embeddings' [prompts, c_dim] and the prompts), the exported "
                        "model's input; repeat for several")
    p.add_argument("--out", metavar="PATH", help="output path without suffix (default: DIR/export/generator)")


def run(ctx: Context) -> int:
    from ...io import atomic_save_safetensors
    from ...training import checkpoint as ckpt
    from ...tools.export import FORMATS, ExportError, condition_kind, export, text_embeddings

    a = ctx.args
    rc = ctx.built.spec.model.run
    G = ctx.built.G
    snap = ckpt.load_generator(G, ctx.run_dir, a.snapshot)
    source = f"{snap.tensors.name} ({snap.kimg:g} kimg)" if snap is not None else "model.safetensors"
    stem = Path(a.out) if a.out else ctx.run_dir / "export" / "generator"
    for suffix in FORMATS.values():
        if stem.name.endswith(suffix):
            stem = stem.with_name(stem.name[: -len(suffix)])
    psi = a.trunc if a.trunc is not None else rc.truncation_psi
    cutoff = a.trunc_cutoff if a.trunc_cutoff is not None else rc.truncation_cutoff
    G = G.eval()
    kind = condition_kind(G)
    try:
        done = export(G, a.formats, stem, truncation_psi=psi, truncation_cutoff=cutoff, noise_mode=a.noise_mode,
                      batch=a.batch, prompts=a.text, source=source,
                      spec_text=(ctx.run_dir / "spec.lock.yaml").read_text(encoding="utf-8"), log=print)
    except ExportError as e:
        raise ValueError(str(e)) from None
    for r in done:
        ins = ", ".join(f"{n} {shape}" for n, shape in r.info["inputs"].items())
        checked = {"onnx": "onnxruntime", "torch-export": "torch.export.load",
                   "safetensors": "the generator rebuilt from the file"}[r.format]
        print(f"wrote {r.path} ({ins} -> img {r.info['output']['img']} in [-1, 1]; psi {psi:g}, noise "
              f"{a.noise_mode}); {checked} vs stylegan-core: max |diff| {r.max_abs_diff:.2e}")
    if kind == "text":
        print("text-conditioned: the exported model takes the text encoder's embedding (text_embedding "
              f"[N, {G.c_dim}]); the tokenizer is Python code and is not exported"
              + ("" if a.text else ": --text PROMPT writes embeddings of prompts"))
        if a.text:
            path = stem.with_name(stem.name + ".text.safetensors")
            atomic_save_safetensors({"embeddings": text_embeddings(G, a.text)}, path,
                                    metadata={f"prompt.{i}": t for i, t in enumerate(a.text)})
            print(f"wrote {path} (embeddings of {len(a.text)} prompts)")
    return 0


TASK = Task(
    name="export",
    summary="G_ema as ONNX, a torch.export program (.pt2) or safetensors, checked against our forward",
    description="Export G_ema of a snapshot (default: the latest) as a file that runs without stylegan-core: "
                "an ONNX model (any ONNX runtime; standard operators only) or a torch.export program (.pt2, "
                "PyTorch alone), mapping z [N, z_dim] (and c [N, c_dim] for a conditional generator, the text "
                "embedding for a text-conditioned one) to images [N, C, H, W] in [-1, 1]; or G_ema's weights "
                "with the resolved spec as safetensors (loaded by stylegan-core without the build folder). "
                "Truncation, noise mode and N are fixed at export. Each file is checked against stylegan-core's "
                "forward on N seeded inputs (max |diff| <= 1e-4) before it is written. Writes "
                "DIR/export/generator.onnx, .pt2, .safetensors.",
    examples="  stylegan-run build export --format onnx\n"
             "  stylegan-run build export --format onnx --format torch-export --trunc 0.7 --batch 4\n"
             "  stylegan-run build export --format safetensors --snapshot 128\n"
             '  stylegan-run build export --format onnx --text "a handwritten digit three"',
    add_arguments=add_arguments,
    run=bad_input_exits_2(run),
)
