"""Official checkpoints (NVIDIA's StyleGAN2-ADA / StyleGAN3, autonomousvision's Projected GAN / StyleGAN-XL).

- :mod:`.unpickler`: the restricted unpickler, the security boundary: an official network pickle is
  read as data (an allow-list of globals, each resolved to a checked re-implementation of ours);
  nothing in the file is imported or executed.
- :mod:`.records`: what it builds (:class:`PersistentRecord`, :class:`ModuleRecord`, numpy arrays) and
  the functions plugin importers read them with (``state_dict()``, :func:`module_records`,
  :func:`spectral_norms`).
- :mod:`.convert`: ``stylegan-build --from-checkpoint``: each network is offered to the plugins'
  ``convert_official_network`` hook, rebuilt from registered parts and given the official weights.
"""
from .convert import (ConversionError, ImportedCheckpoint, ImportedNetwork, OfficialConversion, build_from_checkpoint,
                      import_checkpoint)
from .records import (CheckpointError, ModuleRecord, NumpyArray, PersistentRecord, UnsafePickleError, flatten_state,
                      module_records, spectral_norms, to_plain)
from .unpickler import OfficialPickle, load_official_pickle, unpickle_safely

__all__ = ["CheckpointError", "ConversionError", "ImportedCheckpoint", "ImportedNetwork", "ModuleRecord", "NumpyArray",
           "OfficialConversion", "OfficialPickle", "PersistentRecord", "UnsafePickleError", "build_from_checkpoint",
           "flatten_state", "import_checkpoint", "load_official_pickle", "module_records", "spectral_norms",
           "to_plain", "unpickle_safely"]
