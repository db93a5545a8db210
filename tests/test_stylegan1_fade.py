"""StyleGAN's fade-in of the real images (official ``process_reals``): during a transition the reals D sees are
cross-faded between two levels of detail with the same ``lod`` as the fakes, through the RealsTransform
capability that the growing discriminator declares and the training loop calls."""
from __future__ import annotations

import pytest
import torch

from stylegan_core.interfaces import RealsTransform
from stylegan_plugins.stylegan1.networks import Discriminator
from stylegan_plugins.stylegan1.schedule import GrowingSchedule, lod_at


def official_reals(full: torch.Tensor, lod: float) -> torch.Tensor:
    """NVlabs/stylegan: the dataset's level-floor(lod) images (dataset_tool halves by 2x2 averages, level by
    level), then process_reals' FadeLOD (reshape + reduce_mean + tile, lerp by lod - floor(lod)) and UpscaleLOD
    (tile by 2**floor(lod)), written as the TF code's reshapes."""
    k = int(lod)
    x = full
    for _ in range(k):
        x = (x[:, :, 0::2, 0::2] + x[:, :, 0::2, 1::2] + x[:, :, 1::2, 0::2] + x[:, :, 1::2, 1::2]) * 0.25
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // 2, 2, w // 2, 2).mean(dim=(3, 5), keepdim=True)
    y = y.expand(n, c, h // 2, 2, w // 2, 2).reshape(n, c, h, w)
    x = x + (y - x) * (lod - k)
    f = 2 ** k
    return x.reshape(n, c, h, 1, w, 1).expand(n, c, h, f, w, f).reshape(n, c, h * f, w * f)


@pytest.fixture
def D():
    grow = GrowingSchedule(initial_resolution=8, training_kimg=1, transition_kimg=1)
    return Discriminator(img_resolution=32, img_channels=1, channel_base=64, channel_max=4, growing=grow)


def test_reals_fade_as_the_official_process_reals(D):
    assert isinstance(D, RealsTransform)
    img = torch.rand(3, 1, 32, 32) * 2 - 1
    seen = []
    for nimg in (0, 500, 1000, 1500, 2250, 3000, 5000):
        D.set_training_progress(nimg)
        lod = float(D.lod)
        seen.append(lod)
        out = D.process_reals(img)
        assert out.shape == img.shape
        torch.testing.assert_close(out, official_reals(img, lod), rtol=0, atol=1e-6)
    assert seen[0] == 2.0 and 1.0 < seen[3] < 2.0 and seen[-1] == 0.0  # stable, fading, full resolution
    assert torch.equal(D.process_reals(img), img)  # at full resolution the reals pass unchanged


def test_d_reads_faded_reals_at_the_level_it_reads_fakes(D):
    """At a fractional lod, D's own lod blend of its two from-RGB paths sees the reals as the fakes' structure
    has them: processed reals are invariant under D's downscale-then-upscale at both levels."""
    D.set_training_progress(int(1000 * (1 + 0.3)))  # half-way through the 8 -> 16 transition
    k = int(float(D.lod))
    img = D.process_reals(torch.rand(2, 1, 32, 32) * 2 - 1)
    low = torch.nn.functional.avg_pool2d(img, 2 ** k)
    assert torch.equal(torch.nn.functional.interpolate(low, scale_factor=2 ** k, mode="nearest"), img)
    assert lod_at(0, 32, D.growing) == 2.0
    no_grow = Discriminator(img_resolution=32, img_channels=1, channel_base=64, channel_max=4, growing=None)
    x = torch.rand(2, 1, 32, 32)
    assert torch.equal(no_grow.process_reals(x), x)


def test_training_through_the_cli_shows_d_the_faded_reals(tmp_path, monkeypatch):
    """stylegan-build + stylegan-run train (in-process) on the digits with a short schedule: the loop calls the
    discriminator's process_reals on every real batch, at the lod of that step, and D reads what it returns."""
    from stylegan_core.cli import build as build_cli
    from stylegan_core.cli import run as run_cli

    calls, fed = [], []
    process, forward = Discriminator.process_reals, Discriminator.forward

    def spy_process(self, img):
        out = process(self, img)
        calls.append((float(self.lod), torch.equal(out, img)))
        fed.append(out)
        return out

    def spy_forward(self, img, *a, **kw):
        if fed and img.shape == fed[-1].shape and torch.equal(img, fed[-1]):
            calls.append("D read the processed reals")
        return forward(self, img, *a, **kw)

    monkeypatch.setattr(Discriminator, "process_reals", spy_process)
    monkeypatch.setattr(Discriminator, "forward", spy_forward)
    grow = "{initial_resolution: 8, training_kimg: 0.016, transition_kimg: 0.016}"
    sets = ["train.threads=1", "train.batch_size=8", "train.tick_kimg=0.032", "train.image_snapshot_ticks=100",
            "metrics=[]", "regularizers=[]", "augment=null", f"generator.synthesis.growing={grow}",
            f"discriminator.growing={grow}"]
    out = tmp_path / "b"
    assert build_cli.main(["stylegan1-digits", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    assert run_cli.main([str(out), "train", "--kimg", "0.032", "--no-progress"]) == 0
    steps = [c for c in calls if isinstance(c, tuple)]
    assert [lod for lod, _ in steps] == [2.0, 2.0, 2.0, 1.5]  # 16 images stable at 8x8, then the 16x16 fade-in
    assert not steps[-1][1] and "D read the processed reals" in calls
