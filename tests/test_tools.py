"""The tools, end to end through the command-line entry points (``main(argv)``): spec -> build -> run.

``stylegan-run DIR generate`` (seed ranges, truncation, style-mixing grid, projected w),
``interpolate`` (frames + GIF; MP4 when imageio-ffmpeg is installed), ``project`` (recovers an
image generated from a known w), ``plot`` (and the plot the training loop writes), and
``stylegan-dataset`` (folder / zip / embedded digits -> the zip layout, read back and trained on).
Everything is tiny and local: nothing is downloaded.
"""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylegan_core.cli import build as build_cli
from stylegan_core.cli import dataset as dataset_cli
from stylegan_core.cli import run as run_cli

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "stylegan_core" / "spec" / "default.yaml"

# The embedded default, 64 images per tick, two ticks, every tick a grid, a metric and a snapshot.
FAST = ["--set", "train.batch_size=16", "--set", "train.tick_kimg=0.064", "--set", "train.kimg=0.128",
        "--set", "train.snapshot_ticks=1", "--set", "train.image_snapshot_ticks=1", "--set", "train.metric_ticks=1",
        "--set", "metrics.0.num_gen=128"]


def run(*argv, code: int = 0) -> None:
    rc = run_cli.main([str(a) for a in argv])
    assert rc == code, f"stylegan-run {argv} -> {rc}, expected {code}"


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """The embedded default (32x32 gray, 8 ws of 64), built and trained for 128 images (two ticks)."""
    out = tmp_path_factory.mktemp("tools") / "build"
    assert build_cli.main(["-o", str(out), *FAST]) == 0
    run(out, "train", "--no-progress")
    return out


# -- plot ------------------------------------------------------------------------------------------------

def test_training_writes_plot_and_plot_task_redraws_it(trained, tmp_path, capsys):
    from stylegan_core.tools import plot

    p = trained / "plot.png"
    assert p.is_file() and (trained / "fakes000000.png").is_file()  # beside the sample grids
    im = Image.open(p)
    assert im.format == "PNG" and im.mode == "RGB"
    # panels: losses, other per-tick statistics, the digits_fd metric
    titles = [t for t, _ in plot.collect_series(trained)]
    assert titles[0] == "losses" and "metric digits_fd" in titles
    assert im.size == (plot.WIDTH, plot.PANEL_HEIGHT * len(titles))
    arr = np.asarray(im)
    assert arr.std() > 10  # not blank: axes, text, curves
    colors = {tuple(int(x) for x in c) for c in np.unique(arr.reshape(-1, 3), axis=0)}
    assert all(c in colors for c in plot.COLORS[:2])  # the curves of loss/D and loss/G are drawn
    losses = dict(plot.collect_series(trained))["losses"]
    assert {"loss/G", "loss/D"} <= set(losses) and [k for k, _ in losses["loss/G"]] == [0.064, 0.128]
    # the task redraws it (identically, from the same logs); an empty folder has nothing to plot
    before = p.read_bytes()
    p.unlink()
    run(trained, "plot")
    assert p.read_bytes() == before
    run(tmp_path, "plot", code=2)
    assert "nothing to plot" in capsys.readouterr().err


# -- generate --------------------------------------------------------------------------------------------

def test_generate_seed_ranges_truncation_and_errors(trained, tmp_path, capsys):
    out = tmp_path / "g"
    run(trained, "generate", "--seeds", "0-2,5", "--trunc", "0.5", "--trunc-cutoff", "4", "--outdir", out)
    assert sorted(p.name for p in out.glob("seed*.png")) == ["seed0000.png", "seed0001.png", "seed0002.png",
                                                             "seed0005.png"]
    assert png(out / "grid.png").shape == (64, 64)  # 2x2 grid of 32x32
    run(trained, "generate", "--seeds", "5", "--trunc", "1", "--outdir", tmp_path / "full")
    run(trained, "generate", "--seeds", "5", "--trunc", "0", "--outdir", tmp_path / "avg")
    a, b, c = (png(d / "seed0005.png").astype(int) for d in (out, tmp_path / "full", tmp_path / "avg"))
    assert np.abs(a - b).max() > 0 and np.abs(b - c).max() > 0  # truncation changes the image
    capsys.readouterr()
    run(trained, "generate", "--text", "a photo of a seven", code=2)
    assert "not text-conditioned" in capsys.readouterr().err
    run(trained, "generate", "--class", "3", code=2)
    assert "unconditional" in capsys.readouterr().err
    run(trained, "generate", "--style-mix", "0-1", "2", "--styles", "0-8", code=2)
    e = capsys.readouterr().err
    assert "out of range" in e and "8 ws" in e


def test_style_mixing_grid(trained, tmp_path):
    out = tmp_path / "mix"
    run(trained, "generate", "--style-mix", "0-2", "10-13", "--outdir", out)
    grid = png(out / "style_mix.png")
    assert grid.shape == (4 * 32, 5 * 32)  # (rows + 1) x (cols + 1) cells of 32x32
    cell = lambda r, c: grid[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32].astype(int)  # noqa: E731
    assert cell(0, 0).max() == 0  # the corner is black
    run(trained, "generate", "--seeds", "0,10", "--outdir", tmp_path / "own")
    assert np.abs(cell(0, 1) - png(tmp_path / "own" / "seed0010.png")).max() <= 1  # top row: column seeds
    assert np.abs(cell(1, 0) - png(tmp_path / "own" / "seed0000.png")).max() <= 1  # left column: row seeds
    assert np.abs(cell(1, 1) - cell(1, 0)).max() > 0 and np.abs(cell(1, 1) - cell(0, 1)).max() > 0  # mixed
    # taking every layer (0-7) from the columns reproduces the column images in every row
    run(trained, "generate", "--style-mix", "0-2", "10-13", "--styles", "0-7", "--outdir", tmp_path / "all")
    grid = png(tmp_path / "all" / "style_mix.png")
    for r in (1, 2, 3):
        for c in (1, 2, 3, 4):
            assert np.abs(cell(r, c) - cell(0, c)).max() <= 1


# -- interpolate -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("space", ["w", "z"])
def test_interpolate_frames_and_gif(trained, tmp_path, space):
    out = tmp_path / "interp"
    run(trained, "interpolate", "--seeds", "0,1,2", "--frames", "4", "--space", space, "--video", "gif",
        "--outdir", out)
    frames = sorted((out / "frames").glob("frame*.png"))
    assert len(frames) == 2 * 4 + 1  # 4 per transition, and the last seed
    run(trained, "generate", "--seeds", "0,2", "--outdir", tmp_path / "own")
    # the path starts at seed 0's image and ends at seed 2's (same w, same noise)
    assert np.abs(png(frames[0]).astype(int) - png(tmp_path / "own" / "seed0000.png")).max() <= 1
    assert np.abs(png(frames[-1]).astype(int) - png(tmp_path / "own" / "seed0002.png")).max() <= 1
    seq = [png(f).astype(float) for f in frames]
    assert all(np.abs(a - b).mean() > 0 for a, b in zip(seq, seq[1:]))  # it moves
    gif = Image.open(out / "interpolation.gif")
    assert gif.n_frames == 9 and gif.size == (32, 32)


def test_interpolate_mp4_when_ffmpeg_is_installed(trained, tmp_path):
    from stylegan_core.tools.video import ffmpeg_available

    if not ffmpeg_available():
        pytest.skip(reason="imageio and imageio-ffmpeg are not installed (the optional 'video' extra)")
    import imageio

    out = tmp_path / "interp"
    run(trained, "interpolate", "--seeds", "0,1", "--frames", "6", "--loop", "--video", "mp4", "--outdir", out)
    with imageio.get_reader(str(out / "interpolation.mp4")) as r:
        n = sum(1 for _ in r)
    assert n == 12  # 6 there and 6 back


def test_mp4_without_ffmpeg_is_a_clear_error(trained, tmp_path, capsys):
    from stylegan_core.tools.video import ffmpeg_available

    if ffmpeg_available():
        pytest.skip(reason="imageio-ffmpeg is installed: the missing-plugin error cannot occur")
    run(trained, "interpolate", "--seeds", "0,1", "--frames", "2", "--video", "mp4", "--outdir", tmp_path, code=2)
    assert "imageio-ffmpeg" in capsys.readouterr().err


# -- project ---------------------------------------------------------------------------------------------

# Measured on this model (the embedded default after 128 training images), projecting seed 5's image
# (truncation 1) with the MSE loss and 200 steps: PSNR 26.5 dB in W (27.7 in W+); the image at w_avg
# scores 12.2 dB and 100 other seeds' images 9.3 dB on average (14.4 at best), so 24 dB means the w was
# found (without the noise regularization, 400 steps reach 32.2 dB: the re-drawn noise buffers are the limit).
PSNR_THRESHOLD = 24.0


def test_project_recovers_a_generated_image(trained, tmp_path, capsys):
    from safetensors.torch import load_file

    run(trained, "generate", "--seeds", "5", "--outdir", tmp_path / "gen")
    target = tmp_path / "gen" / "seed0005.png"
    out = tmp_path / "proj"
    run(trained, "project", "--target", target, "--loss", "mse", "--steps", "200", "--w-avg-samples", "1000",
        "--video", "gif", "--no-progress", "--outdir", out)
    info = json.loads((out / "project.json").read_text())
    assert info["space"] == "w" and info["steps"] == 200
    assert info["psnr"] > PSNR_THRESHOLD, info
    assert f"PSNR {info['psnr']:.2f} dB" in capsys.readouterr().out
    t = load_file(str(out / "projected_w.safetensors"))
    assert t["w"].shape == (1, 64)  # one w shared by the 8 layers
    assert any(k.startswith("noise.") for k in t)  # the optimized noise buffers
    assert png(out / "proj.png").shape == (32, 32)
    gif = Image.open(out / "proj.gif")
    assert gif.size == (64, 32) and gif.n_frames >= 100  # target | projection, every step
    # generate --projected-w gives back the projection's image
    run(trained, "generate", "--projected-w", out / "projected_w.safetensors", "--outdir", tmp_path / "again")
    assert np.array_equal(png(tmp_path / "again" / "projected_w.png"), png(out / "proj.png"))


def test_project_w_plus_and_errors(trained, tmp_path, capsys):
    from safetensors.torch import load_file

    target = tmp_path / "target.png"
    Image.fromarray((np.random.RandomState(0).rand(48, 40, 3) * 255).astype(np.uint8)).save(target)  # RGB, not square
    out = tmp_path / "proj"
    run(trained, "project", "--target", target, "--space", "w+", "--loss", "mse", "--steps", "5",
        "--w-avg-samples", "200", "--video", "none", "--no-progress", "--outdir", out)
    assert load_file(str(out / "projected_w.safetensors"))["w"].shape == (8, 64)  # one w per layer
    assert png(out / "target.png").shape == (32, 32)  # cropped, resized, gray as the model
    capsys.readouterr()
    run(trained, "project", code=2)
    assert "--target" in capsys.readouterr().err
    run(trained, "project", "--target", tmp_path / "missing.png", code=2)
    assert "missing.png" in capsys.readouterr().err
    run(trained, "project", "--target", target, "--space", "z", code=2)
    assert "w or w+" in capsys.readouterr().err


def test_project_with_lpips(trained, tmp_path):
    try:
        import stylegan_core.metrics.lpips  # noqa: F401
    except ImportError:
        pytest.skip(reason="stylegan_core.metrics.lpips is not there yet (written with the metrics)")
    run(trained, "generate", "--seeds", "5", "--outdir", tmp_path / "gen")
    out = tmp_path / "proj"
    with pytest.warns(RuntimeWarning, match="random"):  # no --vgg-weights: a random VGG, and it says so
        run(trained, "project", "--target", tmp_path / "gen" / "seed0005.png", "--loss", "lpips+mse",
            "--steps", "50", "--w-avg-samples", "1000", "--video", "none", "--no-progress", "--outdir", out)
    info = json.loads((out / "project.json").read_text())
    # measured with LPIPS (random VGG) + MSE: 22.1 dB after 50 steps (24.75 after 100; LPIPS alone, 200
    # steps: 20.7 dB); the image at w_avg scores 12.2 dB
    assert info["loss"] == "lpips+mse" and info["psnr"] > 20.0, info


# -- stylegan-dataset ------------------------------------------------------------------------------------

def _images(root: Path) -> None:
    """Two classes in sub-folders, of different sizes and modes (RGB, gray, RGBA, palette)."""
    rs = np.random.RandomState(1)
    (root / "cats").mkdir(parents=True)
    (root / "dogs" / "more").mkdir(parents=True)
    Image.fromarray((rs.rand(40, 40, 3) * 255).astype(np.uint8)).save(root / "cats" / "a.png")
    Image.fromarray((rs.rand(64, 64) * 255).astype(np.uint8), "L").save(root / "cats" / "b.jpg")
    Image.fromarray((rs.rand(48, 48, 4) * 255).astype(np.uint8), "RGBA").save(root / "dogs" / "c.png")
    Image.fromarray((rs.rand(32, 32, 3) * 255).astype(np.uint8)).convert("P").save(root / "dogs" / "more" / "d.png")


@pytest.mark.train
def test_dataset_from_folder_reads_back_and_trains(tmp_path, capsys):
    from stylegan_core.data.image_folder import ImageFolderDataset

    src = tmp_path / "src"
    _images(src)
    dest = tmp_path / "ds.zip"
    assert dataset_cli.main([str(src), str(dest), "--resolution", "32", "--labels", "from-folders",
                             "--no-progress"]) == 0
    assert "wrote 4 images (32x32, 3 channels)" in capsys.readouterr().out
    with zipfile.ZipFile(dest) as z:
        names = sorted(z.namelist())
        meta = json.loads(z.read("dataset.json"))
    assert names == ["00000/img00000000.png", "00000/img00000001.png", "00000/img00000002.png",
                     "00000/img00000003.png", "dataset.json"]
    assert meta["labels"] == [["00000/img00000000.png", 0], ["00000/img00000001.png", 0],
                              ["00000/img00000002.png", 1], ["00000/img00000003.png", 1]]
    assert meta["class_names"] == ["cats", "dogs"]
    ds = ImageFolderDataset(str(dest), use_labels=True)
    assert len(ds) == 4 and ds.resolution == 32 and ds.num_channels == 3 and ds.label_dim == 2
    img, label = ds[2]
    assert img.shape == (3, 32, 32) and img.dtype == torch.uint8 and label.tolist() == [0, 1]
    # the 40x40 RGB image, Lanczos-resized: close to Pillow's own resize of it
    ref = np.asarray(Image.open(src / "cats" / "a.png").resize((32, 32), Image.LANCZOS))
    assert np.array_equal(ds[0][0].permute(1, 2, 0).numpy(), ref)

    # gray output, box filter
    gray = tmp_path / "gray.zip"
    assert dataset_cli.main([str(src), str(gray), "--resolution", "16", "--channels", "1", "--resample", "box",
                             "--no-progress"]) == 0
    g = ImageFolderDataset(str(gray))
    assert g.num_channels == 1 and g.resolution == 16 and g[1][0].shape == (1, 16, 16) and g.label_dim == 0

    # the zip trains through a spec (conditional on its two classes)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"extends: {DEFAULT}\nname: folder-ds\n"
                    f"data: {{type: core.image_folder, path: {dest}, resolution: 32, use_labels: true}}\n"
                    "metrics: []\n"
                    "train: {batch_size: 4, kimg: 0.008, tick_kimg: 0.004, snapshot_ticks: 1, image_snapshot_ticks: 1}\n")
    out = tmp_path / "b"
    assert build_cli.main([str(spec), "-o", str(out)]) == 0
    run(out, "train", "--no-progress")
    stats = [json.loads(l) for l in (out / "stats.jsonl").read_text().splitlines()]
    assert len(stats) == 2 and all(np.isfinite(s["loss/G"]) and np.isfinite(s["loss/D"]) for s in stats)
    assert (out / "snapshots" / "snapshot-000000008.safetensors").is_file()
    run(out, "generate", "--seeds", "0-1", "--class", "1", "--outdir", tmp_path / "gen")
    assert png(tmp_path / "gen" / "seed0000.png").shape == (32, 32, 3)


def test_dataset_refuses_non_square_and_bad_images(tmp_path, capsys):
    from stylegan_core.data.image_folder import ImageFolderDataset

    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(np.full((32, 32, 3), 100, np.uint8)).save(src / "ok.png")
    Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(src / "wide.png")  # 60 wide, 40 high
    capsys.readouterr()
    assert dataset_cli.main([str(src), str(tmp_path / "x.zip"), "--no-progress"]) == 2
    e = capsys.readouterr().err
    assert "wide.png" in e and "60x40" in e and "not square" in e and "center-crop" in e
    assert not (tmp_path / "x.zip").exists() and not list(tmp_path.glob(".x.zip*"))  # nothing left behind
    # a crop transform handles it (and mixed sizes)
    assert dataset_cli.main([str(src), str(tmp_path / "c.zip"), "--transform", "center-crop", "--resolution", "16",
                             "--no-progress"]) == 0
    ds = ImageFolderDataset(str(tmp_path / "c.zip"))
    assert len(ds) == 2 and ds[1][0].shape == (3, 16, 16) and int(ds[1][0].float().mean()) == 200
    # wide crop: a 32x16 band letterboxed into 32x32
    assert dataset_cli.main([str(src), str(tmp_path / "w.zip"), "--transform", "center-crop-wide",
                             "--resolution", "32x16", "--no-progress"]) == 0
    wide = ImageFolderDataset(str(tmp_path / "w.zip"))[1][0]
    assert wide.shape == (3, 32, 32) and wide[:, :8].max() == 0 and wide[:, 8:24].min() == 200
    # sizes that differ without --resolution
    (src / "wide.png").unlink()
    Image.fromarray(np.full((64, 64, 3), 50, np.uint8)).save(src / "big.png")
    capsys.readouterr()
    assert dataset_cli.main([str(src), str(tmp_path / "y.zip"), "--no-progress"]) == 2
    assert "differs from the first image" in capsys.readouterr().err
    # a corrupt image: an error naming it, or skipped and counted with --skip-bad
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert dataset_cli.main([str(src), str(tmp_path / "z.zip"), "--resolution", "32", "--no-progress"]) == 2
    e = capsys.readouterr().err
    assert "broken.png" in e and "--skip-bad" in e
    assert dataset_cli.main([str(src), str(tmp_path / "z.zip"), "--resolution", "32", "--skip-bad",
                             "--no-progress"]) == 0
    assert "skipped 1 unreadable: broken.png" in capsys.readouterr().out
    assert len(ImageFolderDataset(str(tmp_path / "z.zip"))) == 2
    # bad options
    assert dataset_cli.main([str(src), str(tmp_path / "r.zip"), "--resolution", "24", "--no-progress"]) == 2
    assert "power of two" in capsys.readouterr().err
    assert dataset_cli.main([str(tmp_path / "nowhere"), str(tmp_path / "r.zip")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_dataset_from_zip_and_embedded_digits(tmp_path):
    from stylegan_core.data.image_folder import ImageFolderDataset

    digits = tmp_path / "digits.zip"
    assert dataset_cli.main(["embedded:digits", str(digits), "--resolution", "16", "--no-progress"]) == 0
    ds = ImageFolderDataset(str(digits), use_labels=True)
    assert len(ds) == 1797 and ds.resolution == 16 and ds.num_channels == 1 and ds.label_dim == 10
    from stylegan_core.data.digits import load_raw

    labels = load_raw()[1]
    assert [int(ds.get_label(i).argmax()) for i in (0, 1, 1000, 1796)] == [int(labels[i]) for i in (0, 1, 1000, 1796)]
    with zipfile.ZipFile(digits) as z:
        assert "00001/img00001000.png" in z.namelist()  # 1,000 images per folder
    # a zip as the source: its dataset.json labels carried over, resized again
    again = tmp_path / "again.zip"
    assert dataset_cli.main([str(digits), str(again), "--resolution", "8", "--max-images", "20",
                             "--no-progress"]) == 0
    ds2 = ImageFolderDataset(str(again), use_labels=True)
    assert len(ds2) == 20 and ds2.resolution == 8
    assert [int(ds2.get_label(i).argmax()) for i in range(20)] == [int(l) for l in labels[:20]]
