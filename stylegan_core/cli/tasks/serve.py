"""``stylegan-run DIR serve``: the model viewer in the browser (a local web app rendering from G_ema)."""
from __future__ import annotations

import argparse

from .base import Context, Task, bad_input_exits_2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--snapshot", default="latest", metavar="WHICH",
                   help="latest (default), model (model.safetensors), a kimg (e.g. 128), a snapshot name or the "
                        "path of a snapshot's .safetensors")


def run(ctx: Context) -> int:
    import importlib.util

    from ...training import checkpoint as ckpt
    from ..common import err

    a = ctx.args
    missing = [m for m in ("fastapi", "uvicorn") if importlib.util.find_spec(m) is None]
    if missing:
        raise ValueError(f"serve needs {' and '.join(missing)}: pip install 'stylegan-core[serve]'")
    if not 0 <= a.port <= 65535:
        raise ValueError(f"--port {a.port}: expected 0-65535")
    from ...tools.serve import Viewer, serve

    built = ctx.built
    rc = built.spec.model.run
    snap = ckpt.load_generator(built.G, ctx.run_dir, a.snapshot)
    source = f"{snap.tensors.name}, {snap.kimg:g} kimg" if snap is not None else "model.safetensors"
    defaults = {"trunc": rc.truncation_psi, "cutoff": rc.truncation_cutoff, "noise": rc.noise_mode,
                "class": rc.class_idx, "text": None}
    if a.host not in ("127.0.0.1", "localhost", "::1"):
        err(f"warning: listening on {a.host}: anyone who can reach this machine can use the viewer")
    serve(Viewer(built.G, defaults, name=built.spec.model.name or "", source=source), a.host, a.port,
          log=lambda s: print(s, flush=True))
    return 0


TASK = Task(
    name="serve",
    summary="a model viewer in the browser: seeds, truncation, condition, style mixing, latent walk",
    description="Start a local web app that renders images from G_ema of a snapshot (default: the latest): "
                "seed and truncation sliders, class or text prompt, noise mode, style mixing of a second seed "
                "at chosen layers, a latent walk toward another seed, translation and rotation of the output "
                "for generators with an output transform (the equivariance view of alias-free generators), and "
                "downloads of the current image and its ws "
                "(readable by generate --projected-w). Open the printed address in a browser; Ctrl-C stops "
                "the server. Listens on 127.0.0.1 (this machine only) unless --host says otherwise.",
    examples="  stylegan-run build serve\n"
             "  stylegan-run build serve --port 8080 --snapshot 128",
    add_arguments=add_arguments,
    run=bad_input_exits_2(run),
)
