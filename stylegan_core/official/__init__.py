"""Official checkpoints (NVIDIA's StyleGAN2-ADA / StyleGAN3, autonomousvision's Projected GAN / StyleGAN-XL).

- :mod:`.prescan`: a pass over the opcode stream before anything is unpickled (resource limits: memo
  indices, hashing cost, expansion through re-references, nesting, ``BUILD`` on tensors).
- :mod:`.unpickler`: the restricted unpickler, the security boundary: an official network pickle (plain
  or written by ``dill``) is read as data (an allow-list of globals, each resolved to a checked
  re-implementation of ours); nothing in the file is imported or executed.
- :mod:`.records`: what it builds (:class:`PersistentRecord`, :class:`ModuleRecord`, :class:`OpaqueRecord`,
  numpy arrays) and the functions plugin importers read them with (``state_dict()``, :func:`module_records`,
  :func:`spectral_norms`).
- :mod:`.convert`: ``stylegan-build --from-checkpoint``: each network is offered to the plugins'
  ``convert_official_network`` hook, rebuilt from registered parts and given the official weights;
  :func:`check_shapes` / :func:`agree` for importers, the provenance of embedded module sources.
"""
from .convert import (ConversionError, ImportedCheckpoint, ImportedNetwork, ImportedWeightsFile, OfficialConversion,
                      agree, build_from_checkpoint, check_plausible, check_shapes, import_checkpoint,
                      imported_weights_file, tensors_sha256)
from .prescan import ScanLimits, prescan
from .records import (CheckpointError, ModuleRecord, NumpyArray, OpaqueRecord, PersistentRecord, UnsafePickleError,
                      flatten_state, module_records, spectral_norms, to_plain)
from .unpickler import OfficialPickle, load_official_pickle, unpickle_safely

__all__ = ["CheckpointError", "ConversionError", "ImportedCheckpoint", "ImportedNetwork", "ImportedWeightsFile",
           "ModuleRecord", "NumpyArray", "OfficialConversion", "OfficialPickle", "OpaqueRecord", "PersistentRecord",
           "ScanLimits", "UnsafePickleError", "agree", "build_from_checkpoint", "check_plausible", "check_shapes",
           "flatten_state",
           "import_checkpoint", "imported_weights_file", "load_official_pickle", "module_records", "prescan",
           "spectral_norms", "tensors_sha256", "to_plain", "unpickle_safely"]
