"""Safe reading of official network pickles: NVIDIA's (StyleGAN2-ADA, StyleGAN2/StyleGAN3 of NVlabs/stylegan3)
and autonomousvision's (Projected GAN, StyleGAN-XL), which add plain torch / timm / pg_modules objects, and
StyleGAN-XL's, which its training loop writes with ``dill``.

An official training snapshot is a plain :mod:`pickle` (StyleGAN-XL: ``dill.dump``) of ``dict(G=..., D=...,
G_ema=..., augment_pipe=..., training_set_kwargs=...)`` whose networks are ``torch_utils.persistence``
objects: each one pickles as ``_reconstruct_persistent_obj(meta)`` with ``meta = dict(type='class',
version=6, module_src=<Python source>, class_name=..., state=<the module's __dict__>)``. Loading such a
file with :func:`pickle.load` (or the official ``legacy.load_network_pkl``) **executes** ``module_src``
and anything else the stream names.

:func:`load_official_pickle` never does. First :func:`~stylegan_core.official.prescan.prescan` walks the
opcode stream without building anything and refuses streams that would take unbounded time or memory
to load (memo indices out of sequence, dict keys that take exponential time to hash, values that
expand through re-references, deep nesting, ``BUILD`` on a tensor). Then the unpickler resolves only the
globals an official network pickle needs, each to a re-implementation of ours that checks its arguments
(:data:`ALLOWED_GLOBALS`); anything else is refused with :class:`UnsafePickleError` before it is called:

- ``torch_utils.persistence._reconstruct_persistent_obj`` -> a :class:`PersistentRecord`
  (``class_name``, ``version``, the sha256 of ``module_src``, ``state``); the source text is
  hashed and dropped, never imported or executed;
- ``torch.storage._load_from_bytes`` -> the bytes decoded here as torch's legacy storage format (the
  only one ``Storage.__reduce__`` writes: a few tiny pickles naming the storage type and its element
  count, then the raw little-endian data), without ``torch.load``: the claimed size must equal the bytes
  present before anything is allocated; torch's zip format is refused;
  ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` -> plain, bounds-checked tensors;
  ``torch.Size`` -> a tuple of sizes;
- ``collections.OrderedDict``; ``dnnlib.util.EasyDict`` -> ``dict`` (also as protocol 0/1 write a dict
  subclass: ``copyreg._reconstructor(EasyDict, dict, items)``);
- numpy scalars and arrays (``numpy[._]core.multiarray.scalar`` / ``_reconstruct``,
  ``numpy.ndarray``, ``numpy.dtype``, ``numpy[._]core.numeric._frombuffer``, dill's ``_create_array``)
  -> decoded with :func:`numpy.frombuffer` from a validated numeric dtype (no object arrays);
- classes of the module paths in :data:`MODULE_CLASS_PATTERNS` (``torch.nn.modules.*``, torch's
  spectral-norm hook objects, timm 0.4-1.x layers, EfficientNet blocks and ViT/DeiT models,
  ``pg_modules.*``, ``feature_networks.vit``): the plain ``nn.Module`` objects that Projected GAN and
  StyleGAN-XL snapshots pickle without ``torch_utils.persistence``. Each such class becomes a data-only
  :class:`ModuleRecord` subclass of ours named after it: nothing is imported (not torch's, timm's or
  pg_modules' class), no ``__init__``/``__setstate__`` of a real class runs; the record only keeps the
  object's state. Such a record may only be created empty (``NEWOBJ`` /
  ``copyreg._reconstructor(cls, object, None)``, as pickle writes a module) and filled once by ``BUILD``;
  calling the class with arguments is refused;
- what ``dill`` writes for StyleGAN-XL's discriminator (its ViT backbone's forward hooks are closures
  pickled by value, ``forward_flex`` / ``_resize_pos_embed`` are bound methods): ``dill._dill``'s
  ``_create_function``, ``_create_code``, ``_create_cell``, ``_load_type('MethodType')``, ``_get_attr``,
  ``_import_module`` (dill 0.3.x) and the ``getattr(dill._dill, '_setattr', setattr)`` /
  ``setattr(cell, 'cell_contents', v)`` steps, module-level functions and ``__dict__`` of
  ``feature_networks.vit``: each becomes an :class:`OpaqueRecord` (a name; no function, code object or
  module is created, imported or called);
- ``builtins.set`` / ``frozenset`` of a list of names (how protocol 2 writes ``_non_persistent_buffers_set``).

The records and how importers read them are in :mod:`stylegan_core.official.records`; which of our
parts an official network becomes is the plugins' business (``convert_official_network`` hook, see
:mod:`stylegan_core.official.convert`).
"""
from __future__ import annotations

import hashlib
import io
import math
import mmap
import pickle
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from ..io import sha256_file
from .prescan import STORAGE_LIMITS, prescan
from .records import (PAYLOAD_HINT, PERSISTENCE_VERSION, CellRecord, CheckpointError, ModuleRecord, NumpyArray,
                      NumpyDType, OpaqueRecord, PersistentRecord, UnsafePickleError, array_from_bytes, brief,
                      to_plain)

#: Top-level keys of an official snapshot that hold networks (``augment_pipe`` may be None).
NETWORK_KEYS = ("G", "D", "G_ema", "augment_pipe")

_NUMPY_CODE = re.compile(r"^(b1|[iu][1248]|f[248]|c(8|16))$")  # numeric dtypes only
_TENSOR_DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
                  torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool}


class _Sentinel:
    """Stands for an allowed global that may only be passed as an argument (``numpy.ndarray``)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_NDARRAY = _Sentinel("numpy.ndarray")
_OBJECT = _Sentinel("builtins.object")
_DICT = _Sentinel("builtins.dict")
_DILL = _Sentinel("dill._dill")


# ----------------------------------------------------------------------------------------------------------------
# Tensor storages: torch's legacy format, decoded here


#: Storage classes of torch's legacy format -> dtype (``torch.cuda.*``: a snapshot saved from the GPU, read on the CPU).
_STORAGE_DTYPES = {"FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
                   "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
                   "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
                   "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64,
                   "ComplexDoubleStorage": torch.complex128}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch/serialization.py MAGIC_NUMBER
_LEGACY_PROTOCOL = 1001
_LOCATION = re.compile(r"^(cpu|cuda(:\d{1,3})?|mps)$")


@dataclass
class DecodedStorage:
    """One tensor storage: its element type and bytes (shared by the tensors built on it)."""

    dtype: torch.dtype
    untyped: Any  # torch.UntypedStorage
    nbytes: int


class _StorageType:
    __slots__ = ("name", "dtype")

    def __init__(self, name: str, dtype: torch.dtype):
        self.name, self.dtype = name, dtype


class _StorageHeader(pickle.Unpickler):
    """The small pickles of the legacy format: only storage classes (as markers) and one persistent id."""

    def __init__(self, file: Any, name: str):
        super().__init__(file)
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
            return _StorageType(f"{module}.{name}", _STORAGE_DTYPES[name])
        raise UnsafePickleError(f"{self.name}: refusing to load global '{module}.{name}' inside a tensor storage "
                                f"({PAYLOAD_HINT})")

    def persistent_load(self, pid: Any) -> Any:
        return ("pid", pid)


def decode_storage(b: bytes, name: str) -> DecodedStorage:
    """Bytes written by ``torch.save(storage, _use_new_zipfile_serialization=False)`` (what
    ``Storage.__reduce__`` hands to ``torch.storage._load_from_bytes``) -> a :class:`DecodedStorage`.

    The format (torch/serialization.py ``_legacy_save``): pickles of the magic number, the protocol
    version 1001, a ``sys_info`` dict, the persistent id ``('storage', <Type>Storage, key, location, numel,
    None)``, the list of storage keys ``[key]``; then the element count as 8 little-endian bytes and the
    raw data. Every pickle is pre-scanned and read with an allow-list of the storage classes; the element
    count must match the bytes that follow exactly, before anything is allocated.
    """
    if b[:4] == b"PK\x03\x04":
        raise UnsafePickleError(f"{name}: refusing a tensor storage in torch's zip format (Storage.__reduce__ writes "
                                "torch's legacy format; a zip's compressed members could decode to far more than the "
                                f"file holds; {PAYLOAD_HINT})")
    f = io.BytesIO(b)

    def small() -> Any:
        start = f.tell()
        prescan(f, name, STORAGE_LIMITS)
        f.seek(start)
        return _StorageHeader(f, name).load()

    try:
        magic = small()
        if magic != _LEGACY_MAGIC:
            raise CheckpointError(f"{name}: a tensor storage that is not in torch's storage format")
        if small() != _LEGACY_PROTOCOL:
            raise CheckpointError(f"{name}: a tensor storage of an unknown torch protocol version")
        info = small()
        if not isinstance(info, dict) or info.get("little_endian") is not True:
            raise CheckpointError(f"{name}: a tensor storage written on a big-endian machine (not supported)")
        pid = small()
        keys = small()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise CheckpointError(f"{name}: unreadable tensor storage ({type(e).__name__}: {str(e)[:120]})") from None
    ok = (isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "pid" and isinstance(pid[1], tuple)
          and len(pid[1]) == 6)
    if not ok:
        raise CheckpointError(f"{name}: a tensor storage without its storage record")
    kind, stype, key, location, numel, view = pid[1]
    if not (kind == "storage" and isinstance(stype, _StorageType) and isinstance(key, str) and len(key) <= 64
            and isinstance(location, str) and _LOCATION.match(location) and type(numel) is int and numel >= 0
            and view is None and keys == [key]):
        raise CheckpointError(f"{name}: invalid tensor storage record {brief(pid[1], 100)}")
    size = torch.empty((), dtype=stype.dtype).element_size()
    head = f.read(8)
    if len(head) != 8 or int.from_bytes(head, "little", signed=True) != numel:
        raise CheckpointError(f"{name}: a tensor storage whose element count does not match its header")
    raw = memoryview(b)[f.tell():]
    if len(raw) != numel * size:
        raise CheckpointError(f"{name}: a {stype.name} of {numel} elements holds {len(raw)} bytes, expected "
                              f"{numel * size}")
    if numel == 0:
        untyped = torch.UntypedStorage(0)
    else:
        untyped = torch.frombuffer(bytearray(raw), dtype=torch.uint8).untyped_storage()
    return DecodedStorage(stype.dtype, untyped, len(raw))


# ----------------------------------------------------------------------------------------------------------------
# The unpickler


#: ``(module, name)`` -> the method of :class:`_SafeUnpickler` (or object) it resolves to.
ALLOWED_GLOBALS: dict[tuple[str, str], str] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): "_persistent_obj",
    ("torch.storage", "_load_from_bytes"): "_load_from_bytes",
    ("torch._utils", "_rebuild_tensor_v2"): "_rebuild_tensor_v2",
    ("torch._utils", "_rebuild_parameter"): "_rebuild_parameter",
    ("torch", "Size"): "_torch_size",
    ("collections", "OrderedDict"): "OrderedDict",
    ("dnnlib.util", "EasyDict"): "dict",
    ("numpy", "dtype"): "_numpy_dtype",
    ("numpy", "ndarray"): "ndarray",
    ("numpy.core.multiarray", "scalar"): "_numpy_scalar",
    ("numpy._core.multiarray", "scalar"): "_numpy_scalar",
    ("numpy.core.multiarray", "_reconstruct"): "_numpy_reconstruct",
    ("numpy._core.multiarray", "_reconstruct"): "_numpy_reconstruct",
    ("numpy.core.numeric", "_frombuffer"): "_numpy_frombuffer",
    ("numpy._core.numeric", "_frombuffer"): "_numpy_frombuffer",
    ("copyreg", "_reconstructor"): "_reconstructor",  # protocol 0/1 objects: _reconstructor(cls, object, None)
    ("copy_reg", "_reconstructor"): "_reconstructor",
    ("builtins", "object"): "object",  # only as _reconstructor's base argument
    ("__builtin__", "object"): "object",
    ("builtins", "dict"): "dict_base",  # only as _reconstructor's base argument (a dict subclass, protocols 0/1)
    ("__builtin__", "dict"): "dict_base",
    ("_codecs", "encode"): "_codecs_encode",  # bytes as protocols 0-2 write them: encode(text, 'latin1')
    ("builtins", "set"): "_set",
    ("__builtin__", "set"): "_set",
    ("builtins", "frozenset"): "_frozenset",
    ("__builtin__", "frozenset"): "_frozenset",
    ("timm.layers.format", "Format"): "_timm_format",  # an Enum: Format('NCHW')
    # dill (StyleGAN-XL's training loop writes its snapshots with dill.dump): recorded, never run
    ("dill", "_dill"): "dill",
    ("dill._dill", "_create_function"): "_dill_function",
    ("dill._dill", "_create_code"): "_dill_code",
    ("dill._dill", "_create_cell"): "_dill_cell",
    ("dill._dill", "_load_type"): "_dill_type",
    ("dill._dill", "_create_array"): "_dill_array",
    ("dill._dill", "_get_attr"): "_dill_get_attr",  # dill 0.3.x: a builtin function by module and name
    ("dill._dill", "_import_module"): "_dill_import_module",  # dill 0.3.x: a module by name
    ("dill._dill", "_setattr"): "_setattr",
    ("builtins", "getattr"): "_getattr",  # dill: getattr(dill._dill, '_setattr', setattr); pickle: bound methods
    ("builtins", "setattr"): "_setattr",  # dill: setattr(cell, 'cell_contents', value)
}

#: Module paths whose classes are read as data-only :class:`ModuleRecord` s (full match; the class name
#: must be an identifier). Official Projected GAN / StyleGAN-XL snapshots pickle these objects plainly.
MODULE_CLASS_PATTERNS: tuple[str, ...] = (
    r"torch\.nn\.modules\.[a-z_]+",  # torch layers and containers (conv, batchnorm, container, ...); _WrappedHook
    r"torch\.nn\.utils\.spectral_norm",  # SpectralNorm, SpectralNormStateDictHook, ...LoadStateDictPreHook
    r"torch\.(ao\.)?nn\.quantized\.modules\.functional_modules",  # FloatFunctional (pg_modules FeatureFusionBlock)
    r"timm\.layers(\.[a-z0-9_]+)?",  # timm >= 0.9: Conv2dSame, BatchNormAct2d, activations, PatchEmbed, Mlp, ...
    r"timm\.models\.layers(\.[a-z0-9_]+)?",  # timm 0.4.12 - 0.8 (the official Projected GAN / StyleGAN-XL pin 0.4.12)
    r"timm\.models\.(_?efficientnet_blocks|_?efficientnet_builder|efficientnet)",  # DepthwiseSeparableConv, ...
    r"timm\.models\.(vision_transformer|deit)",  # StyleGAN-XL's DeiT backbone: VisionTransformer(Distilled), Block
    r"pg_modules\.[a-z0-9_]+",  # Projected GAN / StyleGAN-XL modules without torch_utils.persistence
    r"feature_networks\.vit",  # StyleGAN-XL: Slice, AddReadout, ProjectReadout, Transpose
)
_MODULE_CLASS = re.compile("|".join(f"(?:{p})" for p in MODULE_CLASS_PATTERNS))
#: Module-level functions a StyleGAN-XL discriminator refers to by name (its ViT's injected methods and hook
#: factory: StyleGAN-XL ``feature_networks/vit.py``), and modules whose ``__dict__`` dill names as a function's
#: globals. They become :class:`OpaqueRecord` s: never imported, never called.
FUNCTION_REFS: dict[str, frozenset] = {
    "feature_networks.vit": frozenset({"forward_flex", "_resize_pos_embed", "forward_vit", "get_activation",
                                       "get_readout_oper"}),
}
_GLOBALS_MODULES = re.compile(r"(feature_networks|pg_modules|training|torch_utils)(\.[a-z0-9_]+)*")
#: numpy's C functions as dill 0.3.x spells them (``_get_attr(_import_module(module), name)``) -> their stand-ins
_NUMPY_BUILTINS = {(f"numpy.{core}.{mod}", fn): target
                   for core in ("core", "_core") for mod in ("multiarray", "_multiarray_umath")
                   for fn, target in (("_reconstruct", "_numpy_reconstruct"), ("scalar", "_numpy_scalar"))}
_DILL_TYPES = {"MethodType"}  # _load_type names a StyleGAN-XL snapshot uses (bound methods)
_TIMM_FORMATS = {"NCHW", "NHWC", "NCL", "NLC"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_MAX_RECORD_TYPES = 4096
_MAX_OPAQUE = 100_000


class _SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` is a strict allow-list (see :data:`ALLOWED_GLOBALS`)."""

    def __init__(self, file: Any, name: str, byte_budget: int):
        super().__init__(file)
        self.name = name
        self.byte_budget = byte_budget  # decoded storage bytes + every tensor view's extent + array bytes
        self._budget0 = byte_budget
        self._src_hashes: dict[int, tuple[str, str]] = {}  # id(module_src) -> (src, sha256): memoised sources
        self._record_types: dict[tuple[str, str], type] = {}  # (module, class) -> its ModuleRecord subclass
        self._opaque = 0

    # -- the allow-list ------------------------------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        target = ALLOWED_GLOBALS.get((module, name))
        if target is not None:
            fixed = {"OrderedDict": OrderedDict, "dict": dict, "ndarray": _NDARRAY, "object": _OBJECT,
                     "dict_base": _DICT, "dill": _DILL}
            return fixed[target] if target in fixed else getattr(self, target)
        if name in FUNCTION_REFS.get(module, ()):
            return self._opaque_record("function", f"{module}.{name}")
        if name == "__dict__" and _GLOBALS_MODULES.fullmatch(module):
            return self._opaque_record("module globals", module)
        if _MODULE_CLASS.fullmatch(module) and _IDENTIFIER.match(name):
            return self._record_type(module, name)
        if module.startswith("dnnlib.tflib"):
            raise CheckpointError(f"{self.name}: a TensorFlow-era pickle ({module}.{name}); only PyTorch network "
                                  "pickles (StyleGAN2-ADA-PyTorch, StyleGAN3) can be imported")
        raise UnsafePickleError(f"{self.name}: refusing to load global '{module}.{name}' ({PAYLOAD_HINT})")

    def _refuse(self, glob: str, why: str) -> UnsafePickleError:
        return UnsafePickleError(f"{self.name}: refusing to load global '{glob}' for this use ({why}; {PAYLOAD_HINT})")

    def _opaque_record(self, what: str, name: str, refs: tuple = ()) -> OpaqueRecord:
        self._opaque += 1
        if self._opaque > _MAX_OPAQUE:
            raise CheckpointError(f"{self.name}: more than {_MAX_OPAQUE} functions, code objects or references")
        return OpaqueRecord(what, name, self.name, refs)

    def _record_type(self, module: str, name: str) -> type:
        """The data-only stand-in of class ``module.name``: a :class:`ModuleRecord` subclass of ours (one per class)."""
        t = self._record_types.get((module, name))
        if t is None:
            if len(self._record_types) >= _MAX_RECORD_TYPES:
                raise CheckpointError(f"{self.name}: the pickle names more than {_MAX_RECORD_TYPES} module classes")
            t = type(name, (ModuleRecord,), {"__slots__": (), "__module__": __name__, "_official": (module, name),
                                             "_source_file": self.name})
            self._record_types[(module, name)] = t
        return t

    def _reconstructor(self, cls: Any, base: Any, state: Any = None) -> Any:
        """``copyreg._reconstructor(cls, base, state)``, how protocols 0/1 write objects: an empty record of an
        allowed module class (``base`` object, no state), or a dict subclass (``EasyDict``) from its items."""
        if cls in (dict, OrderedDict) and base is _DICT and isinstance(state, dict):
            return cls(state)
        if not (isinstance(cls, type) and issubclass(cls, ModuleRecord) and cls is not ModuleRecord
                and base is _OBJECT and state is None):
            raise UnsafePickleError(f"{self.name}: refusing copyreg._reconstructor({brief(cls)}, {brief(base, 40)}, "
                                    f"{brief(state, 40)}) ({PAYLOAD_HINT})")
        return cls.__new__(cls)

    def _codecs_encode(self, text: Any, encoding: Any = None) -> bytes:
        if not (isinstance(text, str) and encoding in ("latin1", "latin-1")):
            raise UnsafePickleError(f"{self.name}: refusing _codecs.encode of a {type(text).__name__} with "
                                    f"{brief(encoding, 20)} (only latin1 text, as pickle writes bytes; {PAYLOAD_HINT})")
        return text.encode("latin1")

    def _set(self, items: Any = ()) -> set:
        return set(self._set_items(items, "set"))

    def _frozenset(self, items: Any = ()) -> frozenset:
        return frozenset(self._set_items(items, "frozenset"))

    def _set_items(self, items: Any, what: str) -> list:
        if not isinstance(items, (list, tuple)) or not all(type(i) in (str, int) for i in items):
            raise UnsafePickleError(f"{self.name}: refusing {what}() of a {type(items).__name__} (only lists of "
                                    f"names; {PAYLOAD_HINT})")
        return list(items)

    def _torch_size(self, dims: Any = ()) -> torch.Size:
        if not (isinstance(dims, (tuple, list)) and len(dims) <= 32 and all(type(d) is int and d >= 0 for d in dims)):
            raise self._refuse("torch.Size", f"a size of {brief(dims, 40)}: only up to 32 non-negative ints")
        return torch.Size(dims)

    def _timm_format(self, value: Any) -> str:
        if value not in _TIMM_FORMATS:
            raise self._refuse("timm.layers.format.Format", f"the value {brief(value, 40)}")
        return value

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.name}: refusing a persistent id ({PAYLOAD_HINT})")

    def _spend(self, nbytes: int, what: str = "tensor data") -> None:
        self.byte_budget -= nbytes
        if self.byte_budget < 0:
            raise CheckpointError(f"{self.name}: the pickle decodes to more {what} than the file can hold (over "
                                  f"{self._budget0} bytes of decoded storages and tensor views: corrupt, or built to "
                                  "exhaust memory)")

    # -- dill: functions, code and cells are recorded, never created -----------------------------------------
    def _dill_code(self, *args: Any) -> OpaqueRecord:
        names = [a for a in args if isinstance(a, str) and _DOTTED.match(a)]
        return self._opaque_record("code object", names[-1] if names else "code")

    def _dill_function(self, fcode: Any, fglobals: Any = None, fname: Any = None, fdefaults: Any = None,
                       fclosure: Any = None, fdict: Any = None, fkwdefaults: Any = None) -> OpaqueRecord:
        if not (isinstance(fcode, OpaqueRecord) and fcode.what == "code object"):
            raise self._refuse("dill._dill._create_function", f"a function from a {type(fcode).__name__}, not a "
                                                               "recorded code object")
        name = fname if isinstance(fname, str) and len(fname) <= 200 else fcode.name
        return self._opaque_record("function", name)

    def _dill_cell(self, contents: Any = None) -> CellRecord:
        self._opaque_record("cell", "cell")  # counted
        return CellRecord(self.name, contents)

    def _dill_type(self, name: Any) -> Any:
        if name not in _DILL_TYPES:
            raise self._refuse("dill._dill._load_type", f"the type {brief(name, 40)} (only MethodType, for bound "
                                                         "methods)")
        return self._bound_method

    def _bound_method(self, func: Any, obj: Any = None) -> OpaqueRecord:
        if not isinstance(func, OpaqueRecord) or func.what != "function":
            raise self._refuse("dill._dill._load_type('MethodType')", f"a method of a {type(func).__name__}, not a "
                                                                      "recorded function")
        return self._opaque_record("bound method", func.name, refs=(obj,))

    def _dill_get_attr(self, obj: Any, name: Any) -> Any:
        if not (isinstance(name, str) and _IDENTIFIER.match(name)):
            raise self._refuse("dill._dill._get_attr", f"the attribute {brief(name, 40)}")
        base = obj.name if isinstance(obj, OpaqueRecord) else obj if isinstance(obj, str) else type(obj).__name__
        if isinstance(obj, OpaqueRecord) and obj.what == "module" and (base, name) in _NUMPY_BUILTINS:
            return getattr(self, _NUMPY_BUILTINS[(base, name)])  # dill 0.3.x names numpy's C functions this way
        return self._opaque_record("attribute", f"{base}.{name}")

    def _dill_import_module(self, import_name: Any, safe: Any = False) -> OpaqueRecord:
        if not (isinstance(import_name, str) and len(import_name) <= 200 and _DOTTED.match(import_name)):
            raise self._refuse("dill._dill._import_module", f"the module name {brief(import_name, 40)}")
        return self._opaque_record("module", import_name)

    def _dill_array(self, f: Any, args: Any, state: Any, npdict: Any = None) -> NumpyArray:
        if getattr(f, "__func__", None) is not _SafeUnpickler._numpy_reconstruct or getattr(f, "__self__", None) \
                is not self or not isinstance(args, tuple) or npdict not in (None, {}):
            raise self._refuse("dill._dill._create_array", "only numpy's _reconstruct of a plain ndarray")
        arr = f(*args)
        arr.__setstate__(state)
        return arr

    def _getattr(self, *args: Any) -> Any:
        obj, name, default = (tuple(args) + (None, None, None))[:3]
        if len(args) == 3 and obj is _DILL and name == "_setattr" and default == self._setattr:
            return self._setattr  # dill: getattr(dill._dill, '_setattr', setattr)
        if len(args) == 2 and isinstance(obj, (PersistentRecord, OpaqueRecord)) and isinstance(name, str) \
                and _IDENTIFIER.match(name):
            return self._opaque_record("attribute", f"{type(obj).__name__}.{name}", refs=(obj,))  # a bound method
        raise self._refuse("builtins.getattr", f"getattr with {len(args)} argument(s), of {brief(name, 40)} on a "
                                               f"{type(obj).__name__}: only dill's own steps and methods of recorded "
                                               "modules are read")

    def _setattr(self, *args: Any) -> None:
        if len(args) == 3 and isinstance(args[0], CellRecord) and args[1] == "cell_contents":
            args[0].contents = args[2]
            return None
        what = f"setting {brief(args[1], 40)} on a {type(args[0]).__name__}" if len(args) == 3 else \
            f"setattr with {len(args)} argument(s)"
        raise self._refuse("builtins.setattr", f"{what}: only a recorded closure cell's contents")

    # -- persistence ---------------------------------------------------------------------------------------
    def _persistent_obj(self, meta: Any) -> PersistentRecord:
        if not isinstance(meta, dict):
            raise CheckpointError(f"{self.name}: a persistent object without its meta dict")
        if meta.get("type") != "class":
            raise CheckpointError(f"{self.name}: persistent object of type {brief(meta.get('type'), 40)}; "
                                  "only type 'class' (torch_utils.persistence) is supported")
        if meta.get("version") != PERSISTENCE_VERSION:
            raise CheckpointError(f"{self.name}: persistent object of version {brief(meta.get('version'), 40)}; "
                                  f"only version {PERSISTENCE_VERSION} (StyleGAN2-ADA-PyTorch, StyleGAN3) is "
                                  "supported")
        cls, src, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
        if not isinstance(cls, str) or not cls.isidentifier():
            raise CheckpointError(f"{self.name}: persistent object with class name {brief(cls)}")
        if not isinstance(src, str):
            raise CheckpointError(f"{self.name}: persistent {cls} object without module source text")
        if not isinstance(state, dict):
            raise CheckpointError(f"{self.name}: persistent {cls} object whose state is a {type(state).__name__}")
        hit = self._src_hashes.get(id(src))
        if hit is None or hit[0] is not src:
            hit = (src, hashlib.sha256(src.encode("utf-8", "surrogatepass")).hexdigest())
            self._src_hashes[id(src)] = hit
        # module_src is only hashed: it is never imported, compiled or executed.
        return PersistentRecord(cls, PERSISTENCE_VERSION, hit[1], state, file=self.name)

    # -- torch ---------------------------------------------------------------------------------------------
    def _load_from_bytes(self, b: Any) -> DecodedStorage:
        if not isinstance(b, (bytes, bytearray)):
            raise UnsafePickleError(f"{self.name}: a tensor storage from a {type(b).__name__}, not bytes "
                                    f"({PAYLOAD_HINT})")
        storage = decode_storage(bytes(b), self.name)
        self._spend(storage.nbytes)
        return storage

    def _rebuild_tensor_v2(self, storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                           backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
        if not isinstance(storage, DecodedStorage):
            raise UnsafePickleError(f"{self.name}: a tensor built on a {type(storage).__name__}, not a storage "
                                    f"({PAYLOAD_HINT})")
        ints = lambda t: isinstance(t, tuple) and len(t) <= 32 and all(type(x) is int and x >= 0 for x in t)  # noqa
        if not (type(storage_offset) is int and storage_offset >= 0 and ints(size) and ints(stride)
                and len(size) == len(stride) and isinstance(requires_grad, bool)):
            raise CheckpointError(f"{self.name}: invalid tensor geometry (offset {brief(storage_offset, 40)}, "
                                  f"size {brief(size)}, stride {brief(stride)})")
        _check_no_hooks(self.name, backward_hooks)
        if metadata:
            raise CheckpointError(f"{self.name}: a tensor with metadata {brief(metadata, 80)} (not written by the "
                                  "official code)")
        dtype = storage.dtype
        if dtype not in _TENSOR_DTYPES:
            raise CheckpointError(f"{self.name}: tensor of unsupported dtype {dtype}")
        itemsize = torch.empty((), dtype=dtype).element_size()
        available = storage.nbytes // itemsize
        numel = math.prod(size)
        if numel > available:  # overlapping views could otherwise amplify the file's data
            raise CheckpointError(f"{self.name}: tensor of size {list(size)} has more elements than its storage "
                                  f"({available})")
        if numel > 0:
            last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride))
            if last >= available:
                raise CheckpointError(f"{self.name}: tensor of size {list(size)} reads past its storage "
                                      f"({available} elements)")
        self._spend(numel * itemsize)  # every view is charged its extent: views of one storage are not free
        t = torch.empty((0,), dtype=dtype)
        t.set_(storage.untyped, storage_offset, size, stride)
        return t

    def _rebuild_parameter(self, data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> torch.Tensor:
        if type(data) is not torch.Tensor or not isinstance(requires_grad, bool):
            raise UnsafePickleError(f"{self.name}: a parameter built from a {type(data).__name__} ({PAYLOAD_HINT})")
        _check_no_hooks(self.name, backward_hooks)
        return data  # a plain tensor: parameters are data here

    # -- numpy ---------------------------------------------------------------------------------------------
    def _numpy_dtype(self, code: Any, align: Any = False, copy: Any = True) -> NumpyDType:
        # numpy >= 1.? writes dtype(code, False, True), older numpy dtype(code, 0, 1)
        flag = lambda v: type(v) in (bool, int) and v in (0, 1)  # noqa: E731
        if not (isinstance(code, str) and _NUMPY_CODE.match(code) and flag(align) and flag(copy)):
            raise UnsafePickleError(f"{self.name}: refusing numpy dtype {brief(code, 40)} (only plain numeric dtypes; "
                                    f"{PAYLOAD_HINT})")
        return NumpyDType(self.name, code)

    def _numpy_scalar(self, dtype: Any, data: Any = None) -> np.generic:
        if not isinstance(dtype, NumpyDType) or not isinstance(data, bytes):
            raise UnsafePickleError(f"{self.name}: refusing a numpy scalar of {brief(dtype, 40)} from a "
                                    f"{type(data).__name__} (only plain numeric scalars; {PAYLOAD_HINT})")
        if len(data) != dtype.dtype.itemsize:
            raise CheckpointError(f"{self.name}: numpy {dtype.dtype} scalar of {len(data)} bytes")
        return np.frombuffer(data, dtype=dtype.dtype)[0].copy()

    def _numpy_reconstruct(self, subtype: Any, shape: Any, typecode: Any) -> NumpyArray:
        if subtype is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
            raise UnsafePickleError(f"{self.name}: refusing numpy _reconstruct({brief(subtype, 40)}, ...) "
                                    f"(only plain ndarrays; {PAYLOAD_HINT})")
        return _BudgetedArray(self)

    def _numpy_frombuffer(self, buf: Any, dtype: Any, shape: Any, order: Any) -> NumpyArray:
        if order not in ("C", "F"):
            raise CheckpointError(f"{self.name}: numpy array with memory order {brief(order, 20)}")
        if isinstance(buf, (bytes, bytearray)):
            self._spend(len(buf), "array data")
        return NumpyArray(self.name, array_from_bytes(self.name, buf, dtype, shape, order))


class _BudgetedArray(NumpyArray):
    __slots__ = ("_owner",)

    def __init__(self, owner: _SafeUnpickler):
        super().__init__(owner.name)
        self._owner = owner

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5 and isinstance(state[4], (bytes, bytearray)):
            self._owner._spend(len(state[4]), "array data")
        super().__setstate__(state)


def _check_no_hooks(file: str, hooks: Any) -> None:
    if hooks is None or (isinstance(hooks, dict) and not hooks):
        return
    raise UnsafePickleError(f"{file}: a tensor with backward hooks ({PAYLOAD_HINT})")


# ----------------------------------------------------------------------------------------------------------------
# Reading a file


@dataclass
class OfficialPickle:
    """An official snapshot read safely: its networks as :class:`PersistentRecord` s and the rest as data."""

    path: Path
    sha256: str
    size: int
    networks: dict[str, PersistentRecord]  # 'G', 'D', 'G_ema', 'augment_pipe' (those present and not None)
    training_set_kwargs: Optional[dict[str, Any]] = None  # data only: never constructed
    extra: dict[str, Any] = field(default_factory=dict)  # other top-level keys (plain data where possible)

    def get(self, key: str) -> Optional[PersistentRecord]:
        return self.networks.get(key)


def unpickle_safely(data: Any, name: str = "<pickle>", byte_budget: Optional[int] = None) -> Any:
    """Unpickle ``data`` (bytes, or a seekable binary file at its start) with the pre-scan and the allow-list.

    ``byte_budget``: the size of the file the pickle came from (default: the length of ``data``; unbounded
    for a file object without it); decoded storages, tensor views and arrays may total twice that, plus
    64 KiB. Errors are :class:`CheckpointError` (:class:`UnsafePickleError` for a payload).
    """
    if isinstance(data, (bytes, bytearray)):
        budget = len(data) if byte_budget is None else byte_budget
        data = io.BytesIO(bytes(data))
    else:
        budget = byte_budget if byte_budget is not None else 1 << 62
    start = data.tell()
    prescan(data, name)
    data.seek(start)
    try:
        return _SafeUnpickler(data, name, 2 * budget + (1 << 16)).load()
    except CheckpointError:
        raise
    except (EOFError, pickle.UnpicklingError) as e:
        raise CheckpointError(f"{name}: truncated or corrupt pickle ({type(e).__name__}: {str(e)[:200]})") from None
    except MemoryError:
        raise CheckpointError(f"{name}: corrupt pickle (it asks for more memory than is available)") from None
    except RecursionError:
        raise CheckpointError(f"{name}: corrupt pickle (nested too deeply)") from None
    except Exception as e:  # stack underflow, bad memo index, wrong argument types...
        raise CheckpointError(f"{name}: not a readable network pickle ({type(e).__name__}: {str(e)[:200]})") from None


def _zip_message(path: Path, shown: str) -> Optional[str]:
    """What a zip file given as a network pickle is, for the error message (None: not a zip)."""
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()[:10_000]
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        return None
    if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
        return (f"{shown}: a torch.save archive (zip with data.pkl), not an official network pickle: official "
                "snapshots (network-snapshot-*.pkl) are plain pickles of dict(G, D, G_ema, ...); a state dict saved "
                "with torch.save cannot be imported this way (convert it to safetensors and name it in a spec)")
    return f"{shown}: a zip archive, not an official network pickle (network-snapshot-*.pkl)"


def load_official_pickle(path: Union[str, Path]) -> OfficialPickle:
    """Read an official network pickle without running anything it contains.

    Raises :class:`UnsafePickleError` for a global outside the allow-list (a payload) and
    :class:`CheckpointError` for a missing, truncated, corrupt, oversized or unsupported file.
    """
    p = Path(path)
    shown = str(path)
    try:
        if not p.is_file():
            raise CheckpointError(f"{shown}: no such file" if not p.exists() else f"{shown}: not a file")
        size = p.stat().st_size
    except OSError as e:
        raise CheckpointError(f"{shown}: cannot read: {e.strerror or e}") from None
    if size == 0:
        raise CheckpointError(f"{shown}: empty file")
    try:
        with open(p, "rb") as f:
            head = f.read(4)
        if head == b"PK\x03\x04":
            raise CheckpointError(_zip_message(p, shown) or f"{shown}: a zip archive, not a network pickle")
        digest = sha256_file(p)
        with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            obj = unpickle_safely(mm, shown, byte_budget=size)
    except OSError as e:
        raise CheckpointError(f"{shown}: cannot read: {e.strerror or e}") from None
    return _snapshot(obj, p, shown, digest, size)


def _snapshot(obj: Any, path: Path, shown: str, digest: str, size: int) -> OfficialPickle:
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise CheckpointError(f"{shown}: the pickle holds a {type(obj).__name__}, not the dict of networks of an "
                              "official snapshot (G, D, G_ema, ...)")
    networks: dict[str, PersistentRecord] = {}
    for key in NETWORK_KEYS:
        v = obj.get(key)
        if v is None:
            continue
        if not isinstance(v, PersistentRecord):
            raise CheckpointError(f"{shown}: {key} is a {type(v).__name__}, not a persistent network object")
        v.key = key
        networks[key] = v
    if "G_ema" not in networks and "G" not in networks:
        raise CheckpointError(f"{shown}: no generator (neither G_ema nor G) in the pickle; keys: "
                              f"{brief(', '.join(sorted(obj)), 200) or 'none'}")
    tsk = obj.get("training_set_kwargs")
    training_set_kwargs = to_plain(tsk, f"{shown}: training_set_kwargs") if tsk is not None else None
    if training_set_kwargs is not None and not isinstance(training_set_kwargs, dict):
        raise CheckpointError(f"{shown}: training_set_kwargs is a {type(tsk).__name__}, expected a dict")
    extra = {}
    for k, v in obj.items():
        if k in NETWORK_KEYS or k == "training_set_kwargs":
            continue
        try:
            extra[k] = to_plain(v, f"{shown}: {k}")
        except CheckpointError:
            extra[k] = f"<{type(v).__name__}>"
    return OfficialPickle(path=path, sha256=digest, size=size, networks=networks,
                          training_set_kwargs=training_set_kwargs, extra=extra)


__all__ = ["ALLOWED_GLOBALS", "FUNCTION_REFS", "MODULE_CLASS_PATTERNS", "NETWORK_KEYS", "DecodedStorage",
           "OfficialPickle", "decode_storage", "load_official_pickle", "unpickle_safely"]
