"""Progressive growing: the level-of-detail (``lod``) schedule of StyleGAN (and Progressive GAN).

A network of output resolution ``R`` has levels of detail ``0 .. log2(R) - 2``: ``lod = 0`` is the
full resolution, ``lod = k`` the resolution ``R / 2**k``. A fractional ``lod = k + f`` is the
cross-fade between the two: ``f`` of the way back from ``R / 2**k`` to ``R / 2**(k+1)`` (the
official ``lerp_clip`` semantics: the integer part chooses the resolution, the fraction the blend).

:func:`lod_at` is the official ``training_schedule`` (NVlabs/stylegan ``training/training_loop.py``)
as a pure function of the number of real images shown: with ``phase = training_kimg +
transition_kimg``, ``i = floor(kimg / phase)`` and ``p = kimg - i * phase``,

    lod = max(log2(R) - log2(initial_resolution) - i - max(p - training_kimg, 0) / transition_kimg, 0)

so training starts with ``training_kimg`` at ``initial_resolution``, then every level fades in over
``transition_kimg`` and is trained stable for ``training_kimg`` before the next one fades in. Being a
function of ``cur_nimg`` only, it is the same after a resume.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator


class GrowingSchedule(BaseModel):
    """Progressive growing (the official ``sched.lod_*`` options).

    ``initial_resolution`` (official ``lod_initial_resolution``): the resolution trained first;
    ``training_kimg`` (``lod_training_kimg``): thousands of real images shown with a level stable
    before the next one fades in; ``transition_kimg`` (``lod_transition_kimg``): thousands of images
    over which a new level fades in (0: new levels switch on at once).
    """

    model_config = ConfigDict(extra="forbid")
    initial_resolution: int = Field(8, ge=4, description="resolution trained first (official lod_initial_resolution)")
    training_kimg: float = Field(600.0, ge=0, description="kimg each level is trained stable (lod_training_kimg)")
    transition_kimg: float = Field(600.0, ge=0, description="kimg of the fade-in of each new level "
                                                            "(lod_transition_kimg)")

    @model_validator(mode="after")
    def _check(self) -> "GrowingSchedule":
        r = self.initial_resolution
        if r & (r - 1):
            raise ValueError(f"initial_resolution must be a power of two, got {r}")
        if self.training_kimg + self.transition_kimg <= 0:
            raise ValueError("training_kimg + transition_kimg must be > 0 (for no growing, set growing: null)")
        return self


def as_schedule(growing: Union[None, GrowingSchedule, dict[str, Any]]) -> Optional[GrowingSchedule]:
    """A :class:`GrowingSchedule` from the spec value (the builder hands params over as plain dicts)."""
    if growing is None or isinstance(growing, GrowingSchedule):
        return growing
    return GrowingSchedule.model_validate(growing)


def max_lod(img_resolution: int) -> int:
    """The coarsest level of detail of a network of this resolution (4x4)."""
    return int(math.log2(int(img_resolution))) - 2


def lod_at(cur_nimg: int, img_resolution: int, schedule: GrowingSchedule) -> float:
    """The official level of detail after ``cur_nimg`` real images (module docstring)."""
    res_log2 = math.log2(int(img_resolution))
    if schedule.initial_resolution > img_resolution:
        raise ValueError(f"growing.initial_resolution={schedule.initial_resolution} is above the image resolution "
                         f"{img_resolution}")
    kimg = cur_nimg / 1000.0
    phase_dur = schedule.training_kimg + schedule.transition_kimg
    phase_idx = int(math.floor(kimg / phase_dur)) if phase_dur > 0 else 0
    phase_kimg = kimg - phase_idx * phase_dur
    lod = res_log2 - math.floor(math.log2(schedule.initial_resolution)) - phase_idx
    if schedule.transition_kimg > 0:
        lod -= max(phase_kimg - schedule.training_kimg, 0.0) / schedule.transition_kimg
    return float(max(lod, 0.0))


def full_resolution_kimg(img_resolution: int, schedule: GrowingSchedule) -> float:
    """kimg at which ``lod`` first reaches 0 (the full resolution is faded in completely)."""
    levels = math.log2(img_resolution) - math.log2(schedule.initial_resolution)
    if levels <= 0:
        return 0.0
    return levels * (schedule.training_kimg + schedule.transition_kimg)


def split_lod(lod: float) -> tuple[int, float]:
    """``(k, f)``: the integer level ``floor(lod)`` and the fade fraction ``lod - k``."""
    k = int(math.floor(lod))
    return k, float(lod - k)


__all__ = ["GrowingSchedule", "as_schedule", "max_lod", "lod_at", "full_resolution_kimg", "split_lod"]
