"""StyleGAN3's low-pass filter design: Kaiser-windowed FIR (separable) and its radial (jinc) variant."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool = False) -> Optional[torch.Tensor]:
    """``numtaps`` taps, cutoff and transition ``width`` in the units of the sampling rate ``fs``.

    Separable: ``scipy.signal.firwin`` with a Kaiser window -> 1-D filter.
    Radial: ``jinc(2 cutoff r)`` windowed by the outer product of a Kaiser window -> 2-D
    filter normalised to sum 1 (the centre tap, present for odd ``numtaps``, takes the
    limit value instead of 0/0). One tap means no filtering: ``None``.
    """
    import scipy.signal
    import scipy.special

    if numtaps < 1:
        raise ValueError(f"numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    if not radial:
        f = scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs)
        return torch.as_tensor(f, dtype=torch.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    f = np.where(r == 0, cutoff, f)  # lim_{r->0} J1(2 pi c r) / (pi r) = c
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    w = np.kaiser(numtaps, beta)
    f = f * np.outer(w, w)
    f = f / np.sum(f)
    return torch.as_tensor(f, dtype=torch.float32)
