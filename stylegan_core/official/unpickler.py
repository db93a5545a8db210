"""Safe reading of official network pickles: NVIDIA's (StyleGAN2-ADA, StyleGAN2/StyleGAN3 of NVlabs/stylegan3)
and autonomousvision's (Projected GAN, StyleGAN-XL), which add plain torch / timm / pg_modules objects.

An official training snapshot is a plain :mod:`pickle` of ``dict(G=..., D=..., G_ema=...,
augment_pipe=..., training_set_kwargs=...)`` whose networks are ``torch_utils.persistence``
objects: each one pickles as ``_reconstruct_persistent_obj(meta)`` with
``meta = dict(type='class', version=6, module_src=<Python source>, class_name=..., state=<the
module's __dict__>)``. Loading such a file with :func:`pickle.load` (or the official
``legacy.load_network_pkl``) **executes** ``module_src`` and anything else the stream names.

:func:`load_official_pickle` never does. Its unpickler resolves only the globals an official
network pickle needs, each to a re-implementation of ours that checks its arguments
(:data:`ALLOWED_GLOBALS`); anything else is refused with :class:`UnsafePickleError` before it
is called:

- ``torch_utils.persistence._reconstruct_persistent_obj`` -> a :class:`PersistentRecord`
  (``class_name``, ``version``, the sha256 of ``module_src``, ``state``); the source text is
  hashed and dropped, never imported or executed;
- ``torch.storage._load_from_bytes`` -> ``torch.load(..., weights_only=True)`` of the bytes;
  ``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` -> plain, bounds-checked tensors;
- ``collections.OrderedDict``; ``dnnlib.util.EasyDict`` -> ``dict``;
- numpy scalars and arrays (``numpy[._]core.multiarray.scalar`` / ``_reconstruct``,
  ``numpy.ndarray``, ``numpy.dtype``, ``numpy[._]core.numeric._frombuffer``) -> decoded with
  :func:`numpy.frombuffer` from a validated numeric dtype (no object arrays);
- classes of the module paths in :data:`MODULE_CLASS_PATTERNS` (``torch.nn.modules.*``, torch's
  spectral-norm hook objects, timm 0.4-1.x layers and EfficientNet blocks, ``pg_modules.*``): the
  plain ``nn.Module`` objects that Projected GAN and StyleGAN-XL snapshots pickle without
  ``torch_utils.persistence`` (their ``pg_modules`` networks, the timm backbone of the projected
  discriminator, StyleGAN-XL's class embedding ``nn.Embedding``, spectral-norm hooks). Each such
  class becomes a data-only :class:`ModuleRecord` subclass of ours named after it: nothing is
  imported (not torch's, timm's or pg_modules' class), no ``__init__``/``__setstate__`` of a real
  class runs; the record only keeps the object's state (``_parameters``, ``_buffers``, ``_modules``,
  hooks, plain attributes). Such a record may only be created empty (``NEWOBJ`` /
  ``copyreg._reconstructor(cls, object, None)``, as pickle writes a module) and filled once by
  ``BUILD``; calling the class with arguments is refused;
- ``builtins.set`` / ``frozenset`` of a list (how protocol 2 writes ``_non_persistent_buffers_set``).

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
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from ..io import sha256_file
from .records import (PAYLOAD_HINT, PERSISTENCE_VERSION, CheckpointError, ModuleRecord, NumpyArray, NumpyDType,
                      PersistentRecord, UnsafePickleError, array_from_bytes, to_plain)

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


# ----------------------------------------------------------------------------------------------------------------
# The unpickler


#: ``(module, name)`` -> the method of :class:`_SafeUnpickler` (or object) it resolves to.
ALLOWED_GLOBALS: dict[tuple[str, str], str] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): "_persistent_obj",
    ("torch.storage", "_load_from_bytes"): "_load_from_bytes",
    ("torch._utils", "_rebuild_tensor_v2"): "_rebuild_tensor_v2",
    ("torch._utils", "_rebuild_parameter"): "_rebuild_parameter",
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
    ("_codecs", "encode"): "_codecs_encode",  # bytes as protocols 0-2 write them: encode(text, 'latin1')
    ("builtins", "set"): "_set",
    ("__builtin__", "set"): "_set",
    ("builtins", "frozenset"): "_frozenset",
    ("__builtin__", "frozenset"): "_frozenset",
}

#: Module paths whose classes are read as data-only :class:`ModuleRecord` s (full match; the class name
#: must be an identifier). Official Projected GAN / StyleGAN-XL snapshots pickle these objects plainly.
MODULE_CLASS_PATTERNS: tuple[str, ...] = (
    r"torch\.nn\.modules\.[a-z_]+",  # torch layers and containers (conv, batchnorm, container, ...); _WrappedHook
    r"torch\.nn\.utils\.spectral_norm",  # SpectralNorm, SpectralNormStateDictHook, ...LoadStateDictPreHook
    r"torch\.(ao\.)?nn\.quantized\.modules\.functional_modules",  # FloatFunctional (pg_modules FeatureFusionBlock)
    r"timm\.layers(\.[a-z0-9_]+)?",  # timm >= 0.9: Conv2dSame, BatchNormAct2d, activations, ...
    r"timm\.models\.layers(\.[a-z0-9_]+)?",  # timm 0.4.12 - 0.8 (the official Projected GAN pins 0.4.12)
    r"timm\.models\.(_?efficientnet_blocks|_?efficientnet_builder|efficientnet)",  # DepthwiseSeparableConv, ...
    r"pg_modules\.[a-z0-9_]+",  # Projected GAN / StyleGAN-XL modules without torch_utils.persistence
)
_MODULE_CLASS = re.compile("|".join(f"(?:{p})" for p in MODULE_CLASS_PATTERNS))
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_RECORD_TYPES = 4096
_OBJECT = _Sentinel("builtins.object")


class _SafeUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` is a strict allow-list (see :data:`ALLOWED_GLOBALS`)."""

    def __init__(self, file: Any, name: str, byte_budget: int):
        super().__init__(file)
        self.name = name
        self.byte_budget = byte_budget  # decoded tensor / array bytes may not exceed the file's size
        self._src_hashes: dict[int, tuple[str, str]] = {}  # id(module_src) -> (src, sha256): memoised sources
        self._record_types: dict[tuple[str, str], type] = {}  # (module, class) -> its ModuleRecord subclass

    # -- the allow-list ------------------------------------------------------------------------------------
    def find_class(self, module: str, name: str) -> Any:
        target = ALLOWED_GLOBALS.get((module, name))
        if target == "OrderedDict":
            return OrderedDict
        if target == "dict":
            return dict
        if target == "ndarray":
            return _NDARRAY
        if target == "object":
            return _OBJECT
        if target is not None:
            return getattr(self, target)
        if _MODULE_CLASS.fullmatch(module) and _IDENTIFIER.match(name):
            return self._record_type(module, name)
        if module.startswith("dnnlib.tflib"):
            raise CheckpointError(f"{self.name}: a TensorFlow-era pickle ({module}.{name}); only PyTorch network "
                                  "pickles (StyleGAN2-ADA-PyTorch, StyleGAN3) can be imported")
        raise UnsafePickleError(f"{self.name}: refusing to load global '{module}.{name}' ({PAYLOAD_HINT})")

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

    def _reconstructor(self, cls: Any, base: Any, state: Any = None) -> ModuleRecord:
        """``copyreg._reconstructor(cls, object, None)`` (protocol 0/1 objects): an empty record of ``cls``."""
        if not (isinstance(cls, type) and issubclass(cls, ModuleRecord) and cls is not ModuleRecord
                and base is _OBJECT and state is None):
            raise UnsafePickleError(f"{self.name}: refusing copyreg._reconstructor({cls!r:.60}, {base!r:.40}, "
                                    f"{state!r:.40}) ({PAYLOAD_HINT})")
        return cls.__new__(cls)

    def _codecs_encode(self, text: Any, encoding: Any = None) -> bytes:
        if not (isinstance(text, str) and encoding in ("latin1", "latin-1")):
            raise UnsafePickleError(f"{self.name}: refusing _codecs.encode of a {type(text).__name__} with "
                                    f"{encoding!r:.20} (only latin1 text, as pickle writes bytes; {PAYLOAD_HINT})")
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

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.name}: refusing a persistent id ({PAYLOAD_HINT})")

    def _spend(self, nbytes: int) -> None:
        self.byte_budget -= nbytes
        if self.byte_budget < 0:
            raise CheckpointError(f"{self.name}: the pickle decodes to more tensor data than the file holds "
                                  "(corrupt, or built to exhaust memory)")

    # -- persistence ---------------------------------------------------------------------------------------
    def _persistent_obj(self, meta: Any) -> PersistentRecord:
        if not isinstance(meta, dict):
            raise CheckpointError(f"{self.name}: a persistent object without its meta dict")
        if meta.get("type") != "class":
            raise CheckpointError(f"{self.name}: persistent object of type {meta.get('type')!r:.40}; "
                                  "only type 'class' (torch_utils.persistence) is supported")
        if meta.get("version") != PERSISTENCE_VERSION:
            raise CheckpointError(f"{self.name}: persistent object of version {meta.get('version')!r:.40}; only "
                                  f"version {PERSISTENCE_VERSION} (StyleGAN2-ADA-PyTorch, StyleGAN3) is supported")
        cls, src, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
        if not isinstance(cls, str) or not cls.isidentifier():
            raise CheckpointError(f"{self.name}: persistent object with class name {cls!r:.60}")
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
    def _load_from_bytes(self, b: Any) -> Any:
        if not isinstance(b, (bytes, bytearray)):
            raise UnsafePickleError(f"{self.name}: a tensor storage from a {type(b).__name__}, not bytes "
                                    f"({PAYLOAD_HINT})")
        self._spend(len(b))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(io.BytesIO(bytes(b)), weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UnsafePickleError(f"{self.name}: refusing a tensor storage that is not plain tensor data "
                                    f"({first[:200]}; {PAYLOAD_HINT})") from None
        except Exception as e:
            raise CheckpointError(f"{self.name}: unreadable tensor storage ({type(e).__name__}: "
                                  f"{str(e)[:200]})") from None
        if not isinstance(obj, torch.storage.TypedStorage):
            raise UnsafePickleError(f"{self.name}: a tensor storage decodes to a {type(obj).__name__} "
                                    f"({PAYLOAD_HINT})")
        return obj

    def _rebuild_tensor_v2(self, storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                           backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
        if not isinstance(storage, torch.storage.TypedStorage):
            raise UnsafePickleError(f"{self.name}: a tensor built on a {type(storage).__name__}, not a storage "
                                    f"({PAYLOAD_HINT})")
        ints = lambda t: isinstance(t, tuple) and len(t) <= 32 and all(type(x) is int and x >= 0 for x in t)
        if not (type(storage_offset) is int and storage_offset >= 0 and ints(size) and ints(stride)
                and len(size) == len(stride) and isinstance(requires_grad, bool)):
            raise CheckpointError(f"{self.name}: invalid tensor geometry (offset {storage_offset!r:.40}, "
                                  f"size {size!r:.60}, stride {stride!r:.60})")
        _check_no_hooks(self.name, backward_hooks)
        if metadata:
            raise CheckpointError(f"{self.name}: a tensor with metadata {metadata!r:.80} (not written by the "
                                  "official code)")
        untyped = storage._untyped_storage
        dtype = storage._dtype
        if dtype not in _TENSOR_DTYPES:
            raise CheckpointError(f"{self.name}: tensor of unsupported dtype {dtype}")
        itemsize = torch.empty((), dtype=dtype).element_size()
        available = untyped.nbytes() // itemsize
        if math.prod(size) > available:  # overlapping views could otherwise amplify the file's data
            raise CheckpointError(f"{self.name}: tensor of size {list(size)} has more elements than its storage "
                                  f"({available})")
        if math.prod(size) > 0:
            last = storage_offset + sum((s - 1) * st for s, st in zip(size, stride))
            if last >= available:
                raise CheckpointError(f"{self.name}: tensor of size {list(size)} reads past its storage "
                                      f"({available} elements)")
        t = torch.empty((0,), dtype=dtype)
        t.set_(untyped, storage_offset, size, stride)
        return t

    def _rebuild_parameter(self, data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> torch.Tensor:
        if type(data) is not torch.Tensor or not isinstance(requires_grad, bool):
            raise UnsafePickleError(f"{self.name}: a parameter built from a {type(data).__name__} ({PAYLOAD_HINT})")
        _check_no_hooks(self.name, backward_hooks)
        return data  # a plain tensor: parameters are data here

    # -- numpy ---------------------------------------------------------------------------------------------
    def _numpy_dtype(self, code: Any, align: Any = False, copy: Any = True) -> NumpyDType:
        # numpy >= 1.? writes dtype(code, False, True), older numpy dtype(code, 0, 1)
        flag = lambda v: type(v) in (bool, int) and v in (0, 1)
        if not (isinstance(code, str) and _NUMPY_CODE.match(code) and flag(align) and flag(copy)):
            raise UnsafePickleError(f"{self.name}: refusing numpy dtype {code!r:.40} (only plain numeric dtypes; "
                                    f"{PAYLOAD_HINT})")
        return NumpyDType(self.name, code)

    def _numpy_scalar(self, dtype: Any, data: Any = None) -> np.generic:
        if not isinstance(dtype, NumpyDType) or not isinstance(data, bytes):
            raise UnsafePickleError(f"{self.name}: refusing a numpy scalar of {dtype!r:.40} from a "
                                    f"{type(data).__name__} (only plain numeric scalars; {PAYLOAD_HINT})")
        if len(data) != dtype.dtype.itemsize:
            raise CheckpointError(f"{self.name}: numpy {dtype.dtype} scalar of {len(data)} bytes")
        return np.frombuffer(data, dtype=dtype.dtype)[0].copy()

    def _numpy_reconstruct(self, subtype: Any, shape: Any, typecode: Any) -> NumpyArray:
        if subtype is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
            raise UnsafePickleError(f"{self.name}: refusing numpy _reconstruct({subtype!r:.40}, ...) "
                                    f"(only plain ndarrays; {PAYLOAD_HINT})")
        return _BudgetedArray(self)

    def _numpy_frombuffer(self, buf: Any, dtype: Any, shape: Any, order: Any) -> NumpyArray:
        if order not in ("C", "F"):
            raise CheckpointError(f"{self.name}: numpy array with memory order {order!r:.20}")
        if isinstance(buf, (bytes, bytearray)):
            self._spend(len(buf))
        return NumpyArray(self.name, array_from_bytes(self.name, buf, dtype, shape, order))


class _BudgetedArray(NumpyArray):
    __slots__ = ("_owner",)

    def __init__(self, owner: _SafeUnpickler):
        super().__init__(owner.name)
        self._owner = owner

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5 and isinstance(state[4], (bytes, bytearray)):
            self._owner._spend(len(state[4]))
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
    """Unpickle ``data`` (bytes or a binary file object) with the allow-list; errors are :class:`CheckpointError`."""
    if isinstance(data, (bytes, bytearray)):
        budget = len(data) if byte_budget is None else byte_budget
        data = io.BytesIO(bytes(data))
    else:
        budget = byte_budget if byte_budget is not None else 1 << 62
    try:
        return _SafeUnpickler(data, name, budget + (1 << 16)).load()
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


def load_official_pickle(path: Union[str, Path]) -> OfficialPickle:
    """Read an official network pickle without running anything it contains.

    Raises :class:`UnsafePickleError` for a global outside the allow-list (a payload) and
    :class:`CheckpointError` for a missing, truncated, corrupt or unsupported file.
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
                              f"{', '.join(sorted(obj)) or 'none'}")
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


__all__ = ["ALLOWED_GLOBALS", "MODULE_CLASS_PATTERNS", "NETWORK_KEYS", "OfficialPickle", "load_official_pickle",
           "unpickle_safely"]
