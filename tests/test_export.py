"""``stylegan-run DIR export``: ONNX, torch.export (.pt2) and safetensors files of G_ema, checked against our forward.

Tiny networks of each generation (StyleGAN2, StyleGAN3-T/R, StyleGAN-XL with a super-resolution stage, a
text-conditioned StyleGAN-T), built and exported through the CLI in-process; the exported programs are run
again here on other seeds (the ONNX and .pt2 files of StyleGAN2 in a process where stylegan-core cannot be
imported) and compared with the generator's forward within 1e-4.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from stylegan_core.cli import build as build_cli  # noqa: E402
from stylegan_core.cli import run as run_cli  # noqa: E402
from stylegan_core.spec import DEFAULT_SPEC  # noqa: E402

TOL = 1e-4
DIFF = re.compile(r"wrote (\S+) .*max \|diff\| ([0-9.e+-]+)")
# a short schedule: two ticks of 8 images, a snapshot each, no metric
TRAIN = ["--set", "train.batch_size=4", "--set", "train.tick_kimg=0.008", "--set", "train.kimg=0.016",
         "--set", "train.snapshot_ticks=1", "--set", "train.image_snapshot_ticks=100", "--set", "metrics=[]"]

SPECS = {
    "stylegan3-t": """
        generator:
          mapping: {type: stylegan3.mapping, z_dim: 16, num_layers: 2}
          synthesis: {type: stylegan3.synthesis, w_dim: 16, channel_base: 256, channel_max: 8, num_layers: 4,
                      conv_kernel: 3, num_fp16_res: 0, conv_clamp: null}
        data: {type: core.digits, resolution: 16}
        """,
    "stylegan3-r": """
        generator:
          mapping: {type: stylegan3.mapping, z_dim: 16, num_layers: 2}
          synthesis: {type: stylegan3.synthesis, w_dim: 16, channel_base: 256, channel_max: 8, num_layers: 4,
                      conv_kernel: 1, use_radial_filters: true, num_fp16_res: 0, conv_clamp: null}
        data: {type: core.digits, resolution: 16}
        """,
    "stylegan-xl": """
        generator:
          mapping: {type: stylegan_xl.mapping, z_dim: 16, num_layers: 2, embeddings: random, embed_dim: 8,
                    embed_seed: 0}
          synthesis:
            type: stylegan_xl.synthesis
            w_dim: 16
            stem: {resolution: 16, num_layers: 4, channel_base: 256, channel_max: 8, conv_kernel: 3}
            stages: [{up_factor: 2, head_layers: 3}]
            stage: 1
            num_fp16_res: 0
            conv_clamp: null
        data: {type: core.digits, resolution: 32, use_labels: true}
        """,
}


def cli(main, *args, capsys, code: int = 0) -> tuple[str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    assert rc == code, f"{args} -> {rc}\nstdout:\n{out}\nstderr:\n{err}"
    return out, err


def build(tmp: Path, name: str, body: str, capsys, *overrides: str) -> Path:
    spec = tmp / f"{name}.yaml"
    spec.write_text(f"extends: {DEFAULT_SPEC}\nname: {name}\nmetrics: []\n" + textwrap.dedent(body))
    cli(build_cli.main, spec, "-o", tmp / name, *overrides, capsys=capsys)
    return tmp / name


def diffs(out: str) -> dict[str, float]:
    """suffix -> the max |diff| the export task printed."""
    return {Path(m.group(1)).suffix: float(m.group(2)) for m in DIFF.finditer(out)}


def generator_at(run_dir: Path, which: str):
    from stylegan_core.runs import load_built
    from stylegan_core.training.checkpoint import load_generator

    built = load_built(run_dir)
    load_generator(built.G, run_dir, which, log=lambda s: None)
    return built.G.eval()


@pytest.fixture(scope="module")
def sg2_run(tmp_path_factory):
    """The embedded default (StyleGAN2, 32x32, 8 channels at most), trained for two ticks of 8 images (snapshots at
    0.008 and 0.016)."""
    tmp = tmp_path_factory.mktemp("export_sg2")
    out = tmp / "sg2"
    assert build_cli.main(["-o", str(out), *TRAIN, "--set", "generator.synthesis.channel_max=8",
                           "--set", "discriminator.channel_max=8"]) == 0
    assert run_cli.main([str(out), "train", "--no-progress"]) == 0
    snaps = sorted(p.name for p in (out / "snapshots").glob("*.safetensors"))
    assert snaps == ["snapshot-000000008.safetensors", "snapshot-000000016.safetensors"]
    return out


STANDALONE = r"""
import importlib.abc, json, sys
class NoStyleganCore(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("stylegan_core", "stylegan_plugins"):
            raise ImportError(f"{name}: this process runs exported files without stylegan-core")
sys.meta_path.insert(0, NoStyleganCore())
import numpy as np, onnxruntime, torch
z = np.load(sys.argv[1])
sess = onnxruntime.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"])
np.save(sys.argv[4], sess.run(["img"], {"z": z})[0])
prog = torch.export.load(sys.argv[3])
with torch.no_grad():
    np.save(sys.argv[5], prog.module()(torch.from_numpy(z)).numpy())
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("stylegan_core", "stylegan_plugins")))))
"""


def test_stylegan2_all_formats_from_a_snapshot(sg2_run, tmp_path, capsys):
    from stylegan_core.tools.export import load_generator_file
    from stylegan_core.tools.generate import seed_z

    out, _ = cli(run_cli.main, sg2_run, "export", "--format", "onnx", "--format", "torch-export", "--format",
                 "safetensors", "--snapshot", "0.008", "--trunc", "0.7", "--batch", "2", capsys=capsys)
    d = diffs(out)
    assert set(d) == {".onnx", ".pt2", ".safetensors"}, out
    assert all(v <= TOL for v in d.values()), d
    assert d[".safetensors"] == 0.0
    print(f"stylegan2: max |diff| onnx {d['.onnx']:.2e}, pt2 {d['.pt2']:.2e}")
    assert "snapshot-000000008" in out and "using G_ema of" in out

    exp = sg2_run / "export"
    G = generator_at(sg2_run, "0.008")
    # other seeds than the export's own check, in a process that cannot import stylegan-core
    z = seed_z(G, [11, 12])
    np.save(tmp_path / "z.npy", z.numpy())
    p = subprocess.run([sys.executable, "-c", STANDALONE, tmp_path / "z.npy", exp / "generator.onnx",
                        exp / "generator.pt2", tmp_path / "onnx.npy", tmp_path / "pt2.npy"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout.strip().splitlines()[-1]) == []  # nothing of stylegan-core was loaded
    with torch.no_grad():
        ref = G(z, torch.zeros([2, 0]), truncation_psi=0.7, noise_mode="const").numpy()
    for name in ("onnx", "pt2"):
        got = np.load(tmp_path / f"{name}.npy")
        assert got.shape == (2, 1, 32, 32)
        assert np.abs(got - ref).max() <= TOL, name
    # the snapshot chosen is the first, not the latest
    with torch.no_grad():
        latest = generator_at(sg2_run, "latest")(z, torch.zeros([2, 0]), truncation_psi=0.7, noise_mode="const")
    assert np.abs(latest.numpy() - ref).max() > 1e-3

    # the ONNX file names its inputs and carries the export's description
    import onnx

    m = onnx.load(str(exp / "generator.onnx"))
    assert [i.name for i in m.graph.input] == ["z"] and [o.name for o in m.graph.output] == ["img"]
    info = json.loads({p.key: p.value for p in m.metadata_props}["stylegan_core"])
    assert info["truncation_psi"] == 0.7 and info["noise_mode"] == "const" and "snapshot-000000008" in info["source"]
    assert info["inputs"] == {"z": [2, 64]} and info["output"]["img"] == [2, 1, 32, 32]

    # the safetensors file alone (no build folder) rebuilds the same generator
    alone = tmp_path / "elsewhere" / "g.safetensors"
    alone.parent.mkdir()
    shutil.copy(exp / "generator.safetensors", alone)
    G2, info2 = load_generator_file(alone)
    assert info2["truncation_psi"] == 0.7
    with torch.no_grad():
        again = G2(z, torch.zeros([2, 0]), truncation_psi=0.7, noise_mode="const").numpy()
    assert np.array_equal(again, ref)


@pytest.mark.parametrize("arch", list(SPECS))
def test_stylegan3_and_xl_onnx_and_torch_export(arch, tmp_path, capsys):
    import onnxruntime as ort

    from stylegan_core.tools.generate import seed_z

    run_dir = build(tmp_path, arch, SPECS[arch], capsys)
    out, _ = cli(run_cli.main, run_dir, "export", "--format", "onnx", "--format", "torch-export", "--trunc", "0.8",
                 capsys=capsys)
    d = diffs(out)
    assert set(d) == {".onnx", ".pt2"} and all(v <= TOL for v in d.values()), out
    print(f"{arch}: max |diff| onnx {d['.onnx']:.2e}, pt2 {d['.pt2']:.2e}")

    G = generator_at(run_dir, "latest")
    z = seed_z(G, [7])
    c = torch.zeros([1, G.c_dim])
    if G.c_dim:
        c[0, 3] = 1
    with torch.no_grad():
        ref = G(z, c, truncation_psi=0.8, noise_mode="const").numpy()
    sess = ort.InferenceSession(str(run_dir / "export" / "generator.onnx"), providers=["CPUExecutionProvider"])
    feeds = {"z": z.numpy(), **({"c": c.numpy()} if G.c_dim else {})}
    assert [i.name for i in sess.get_inputs()] == list(feeds)
    got = sess.run(["img"], feeds)[0]
    assert got.shape == ref.shape and np.abs(got - ref).max() <= TOL
    prog = torch.export.load(str(run_dir / "export" / "generator.pt2"))
    with torch.no_grad():
        got = prog.module()(*[torch.from_numpy(v) for v in feeds.values()]).numpy()
    assert np.abs(got - ref).max() <= TOL


def test_text_conditioned_generator_exports_from_the_embedding(tmp_path, capsys):
    pytest.importorskip("open_clip")
    from safetensors.torch import load_file

    from stylegan_core.tools.generate import seed_z

    run_dir = build(tmp_path, "text", """
        generator:
          mapping:
            type: stylegan_t.mapping
            z_dim: 16
            conditioning: {type: stylegan_t.clip_text, model: ViT-B-32, weights: random, seed: 0, width: 32,
                           layers: 1, heads: 2, context_length: 16, embed_dim: 16}
          synthesis: {type: stylegan_t.synthesis, preset: custom, channel_base: 512, channel_max: 8,
                      num_res_blocks: 1, w_dim: 32, num_fp16_res: 0, conv_clamp: null}
        data: {type: core.digits, resolution: 16, captions: true}
        """, capsys)
    prompt = "a handwritten digit three"
    out, _ = cli(run_cli.main, run_dir, "export", "--format", "torch-export", "--text", prompt, capsys=capsys)
    assert diffs(out)[".pt2"] <= TOL, out
    print(f"stylegan-t: max |diff| pt2 {diffs(out)['.pt2']:.2e}")
    assert "text_embedding [1, 16]" in out and "tokenizer is Python code and is not exported" in out
    emb = load_file(str(run_dir / "export" / "generator.text.safetensors"))["embeddings"]
    assert emb.shape == (1, 16)

    G = generator_at(run_dir, "latest")
    z = seed_z(G, [5])
    with torch.no_grad():
        ref = G(z, [prompt], noise_mode="const")  # the caption through the run's tokenizer and text encoder
        got = torch.export.load(str(run_dir / "export" / "generator.pt2")).module()(z, emb)
    assert (got - ref).abs().max() <= TOL


def test_what_cannot_be_exported_is_refused_in_one_line(sg2_run, capsys, monkeypatch):
    def refused(*args: str) -> str:
        _, err = cli(run_cli.main, sg2_run, "export", *args, capsys=capsys, code=2)
        lines = [l for l in err.strip().splitlines() if l.startswith("error:")]
        assert len(lines) == 1, err
        return lines[0]

    assert "cannot reproduce PyTorch's random draws" in refused("--format", "onnx", "--noise-mode", "random")
    assert "not text-conditioned" in refused("--format", "onnx", "--text", "a cat")
    assert "no snapshot at 9 kimg" in refused("--format", "onnx", "--snapshot", "9")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if the export extra were not installed
    assert "pip install 'stylegan-core[export]'" in refused("--format", "onnx")
    _, err = cli(run_cli.main, sg2_run, "export", capsys=capsys, code=2)
    assert "--format" in err
