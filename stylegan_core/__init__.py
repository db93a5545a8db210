"""stylegan-core: the StyleGAN family built from registered, swappable parts."""
import os as _os
import sys as _sys

__version__ = "0.1.0"

# OpenMP threads (torch's intra-op pool and the compiled ops' parallel regions) wait passively, i.e. sleep
# instead of spinning, unless the user chose a policy. GNU OpenMP's default spins for a while before sleeping;
# on a machine where another process is busy a spinning thread holds a core its descheduled partner needs,
# and training beside one busy process fell to a tenth of its fair share (bench/contention.py measures it).
# libgomp reads OMP_WAIT_POLICY once, when it is loaded with torch: set here, before the package imports
# torch; a program that imported torch first keeps its own setting.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .hookspecs import hookimpl  # noqa: E402,F401

__all__ = ["hookimpl", "__version__"]
