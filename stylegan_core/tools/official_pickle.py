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

A record's weights flatten to ``state_dict()`` names (:meth:`PersistentRecord.state_dict`), through
nested persistent and module records alike (spectral norm's ``weight_orig``/``weight_u``/``weight_v``,
batch norm's running statistics and ``num_batches_tracked`` included).
Which of *our* parts an official network becomes is the business of the plugins
(``convert_official_network`` hook, see :mod:`stylegan_core.tools.import_official`).
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

#: The only persistence format we read (torch_utils/persistence.py ``_version``).
PERSISTENCE_VERSION = 6
#: Top-level keys of an official snapshot that hold networks (``augment_pipe`` may be None).
NETWORK_KEYS = ("G", "D", "G_ema", "augment_pipe")
MAX_DEPTH = 64  # nesting of modules / plain data

_PAYLOAD_HINT = "not an official network pickle, or a pickle carrying a payload"
_NUMPY_CODE = re.compile(r"^(b1|[iu][1248]|f[248]|c(8|16))$")  # numeric dtypes only
_TENSOR_DTYPES = {torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
                  torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool}


class CheckpointError(Exception):
    """A checkpoint that cannot be imported: missing, truncated, corrupt, or not an official network pickle."""


class UnsafePickleError(CheckpointError):
    """The pickle names something an official network pickle never does (a payload); nothing of it was run."""


# ----------------------------------------------------------------------------------------------------------------
# What the unpickler builds


class PersistentRecord:
    """One ``torch_utils.persistence`` object, as data.

    ``class_name`` is the bare class name the official code recorded (``'Generator'``: the
    defining module is not recorded, only its source, which is hashed here and dropped),
    ``version`` the persistence format (6), ``module_src_sha256`` the sha256 of that source
    (provenance only) and ``state`` the object's ``__dict__`` (``_parameters``, ``_buffers``,
    ``_modules`` of sub-records, ``_init_args``, ``_init_kwargs``, plain attributes, ...).
    ``key`` is the top-level key it was found under (``'G_ema'``) and ``path`` its module path.
    """

    __slots__ = ("class_name", "version", "module_src_sha256", "state", "key", "file", "_flat")

    def __init__(self, class_name: str, version: int, module_src_sha256: str, state: dict[str, Any],
                 file: str = "<pickle>"):
        self.class_name = class_name
        self.version = version
        self.module_src_sha256 = module_src_sha256
        self.state = state
        self.key = ""
        self.file = file
        self._flat: Optional[OrderedDict[str, torch.Tensor]] = None

    def __setstate__(self, state: Any) -> None:  # BUILD on a record: never produced by the official code
        raise UnsafePickleError(f"{self.file}: unexpected state applied to a persistent {self.class_name} object "
                                f"({_PAYLOAD_HINT})")

    def __repr__(self) -> str:
        return f"PersistentRecord({self.where}, class_name={self.class_name!r})"

    @property
    def where(self) -> str:
        return f"{self.file} ({self.key})" if self.key else self.file

    @property
    def init_args(self) -> tuple:
        """Positional constructor arguments as plain data (normally empty)."""
        return tuple(to_plain(self.state.get("_init_args", ()), f"{self.where}: _init_args"))

    @property
    def init_kwargs(self) -> dict[str, Any]:
        """Constructor keyword arguments as plain data (EasyDicts are dicts, numpy values Python values)."""
        kw = to_plain(self.state.get("_init_kwargs", {}), f"{self.where}: _init_kwargs")
        if not isinstance(kw, dict):
            raise CheckpointError(f"{self.where}: _init_kwargs is a {type(kw).__name__}, expected a dict")
        return kw

    @property
    def attributes(self) -> dict[str, Any]:
        """The plain attributes of the object (``z_dim``, ``img_resolution``, ...); private ones left out."""
        out = {}
        for k, v in self.state.items():
            if isinstance(k, str) and not k.startswith("_"):
                try:
                    out[k] = to_plain(v, k)
                except CheckpointError:
                    continue
        return out

    def children(self) -> OrderedDict[str, "PersistentRecord"]:
        """Sub-modules by name (``_modules`` entries that are persistent objects)."""
        mods = self.state.get("_modules") or {}
        return OrderedDict((k, v) for k, v in mods.items() if isinstance(v, PersistentRecord))

    def state_dict(self) -> OrderedDict[str, torch.Tensor]:
        """Parameters and persistent buffers by ``state_dict()`` name (a fresh dict; the tensors are shared)."""
        if self._flat is None:
            self._flat = flatten_state(self)
        return OrderedDict(self._flat)


class ModuleRecord(PersistentRecord):
    """A plain (non-persistent) object of an allowed class, as data: ``module`` + ``class_name`` name the
    class the pickle recorded (``'torch.nn.modules.conv'``, ``'Conv2d'``), ``state`` is what pickle's
    ``BUILD`` gave it (a module's ``__dict__``: ``_parameters``, ``_buffers``, ``_modules``, hooks, plain
    attributes). ``version`` is 0 and ``module_src_sha256`` empty: no source travels with such a class.

    The unpickler makes one subclass of this per recorded class (see :data:`MODULE_CLASS_PATTERNS`); its
    instances are created empty (no arguments) and filled by exactly one ``BUILD``. Calling the class
    (``REDUCE``/``INST``/``OBJ``) or constructing it with arguments is refused: an official pickle never does.
    """

    __slots__ = ("module", "_built")
    _official: tuple[str, str] = ("", "")  # set on each per-class subclass
    _source_file: str = "<pickle>"

    def __new__(cls, *args: Any, **kwargs: Any) -> "ModuleRecord":
        module, name = cls._official
        if cls is ModuleRecord or not name:
            raise UnsafePickleError(f"{cls._source_file}: a module record without its class ({_PAYLOAD_HINT})")
        if args or kwargs:
            raise UnsafePickleError(f"{cls._source_file}: refusing to construct '{module}.{name}' with arguments "
                                    f"({_PAYLOAD_HINT})")
        obj = object.__new__(cls)
        PersistentRecord.__init__(obj, name, 0, "", {}, file=cls._source_file)
        obj.module = module
        obj._built = False
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # only reached when the stream *calls* the class
        raise UnsafePickleError(f"{self.file}: refusing to call '{self.module}.{self.class_name}' "
                                f"({_PAYLOAD_HINT})")

    def __setstate__(self, state: Any) -> None:
        if self._built:
            raise UnsafePickleError(f"{self.file}: state applied twice to a '{self.qualified_name}' object "
                                    f"({_PAYLOAD_HINT})")
        if isinstance(state, tuple) and len(state) == 2 and all(s is None or isinstance(s, dict) for s in state):
            state = {**(state[0] or {}), **(state[1] or {})}  # (__dict__, slots) of a class with __slots__
        if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
            raise CheckpointError(f"{self.file}: the state of a '{self.qualified_name}' object is a "
                                  f"{type(state).__name__}, expected its attribute dict")
        self.state = dict(state)
        self._built = True

    @property
    def qualified_name(self) -> str:
        return f"{self.module}.{self.class_name}"

    def __repr__(self) -> str:
        return f"ModuleRecord({self.where}, {self.qualified_name})"


def module_records(record: PersistentRecord) -> "OrderedDict[str, PersistentRecord]":
    """Every (persistent or plain) sub-module of ``record`` by module path (``''`` is ``record``), in order."""
    out: OrderedDict[str, PersistentRecord] = OrderedDict()
    stack: set[int] = set()

    def visit(rec: PersistentRecord, prefix: str, depth: int) -> None:
        if depth > MAX_DEPTH or id(rec) in stack:
            raise CheckpointError(f"{record.where}: {prefix or rec.class_name}: modules nested too deeply or "
                                  "a module contains itself (corrupt pickle)")
        stack.add(id(rec))
        out[prefix] = rec
        mods = rec.state.get("_modules") or {}
        for name, child in (mods.items() if isinstance(mods, dict) else ()):
            if isinstance(child, PersistentRecord):
                visit(child, f"{prefix}.{name}" if prefix else str(name), depth + 1)
        stack.discard(id(rec))

    visit(record, "", 0)
    return out


def spectral_norms(record: PersistentRecord) -> dict[str, dict[str, Any]]:
    """torch spectral-norm settings per module path: ``{path: {name, dim, n_power_iterations, eps}}``, read
    from the ``torch.nn.utils.spectral_norm.SpectralNorm`` forward pre-hooks the pickle recorded (as data)."""
    out: dict[str, dict[str, Any]] = {}
    for path, rec in module_records(record).items():
        hooks = rec.state.get("_forward_pre_hooks") or {}
        if not isinstance(hooks, dict):
            continue
        for hook in hooks.values():
            if isinstance(hook, ModuleRecord) and hook.qualified_name == "torch.nn.utils.spectral_norm.SpectralNorm":
                out[path] = hook.attributes
    return out


class NumpyArray:
    """A numpy array decoded from the pickle (``.array``); built in two steps by pickle's REDUCE + BUILD."""

    __slots__ = ("array", "_file")

    def __init__(self, file: str, array: Optional[np.ndarray] = None):
        self._file = file
        self.array = array

    def __setstate__(self, state: Any) -> None:
        if self.array is not None:
            raise UnsafePickleError(f"{self._file}: state applied twice to a numpy array ({_PAYLOAD_HINT})")
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise CheckpointError(f"{self._file}: unsupported numpy array state")
        _, shape, dtype, fortran, raw = state
        self.array = _array_from_bytes(self._file, raw, dtype, shape, "F" if fortran else "C")

    def __repr__(self) -> str:
        return f"NumpyArray({self.array!r})"


class _NumpyDType:
    """A numeric numpy dtype (``numpy.dtype(code, align, copy)`` plus its byte order from BUILD)."""

    __slots__ = ("dtype", "_file", "_set")

    def __init__(self, file: str, code: str):
        self._file = file
        self.dtype = np.dtype(code)
        self._set = False

    def __setstate__(self, state: Any) -> None:
        ok = (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)
              and state[1] in ("<", ">", "|", "=") and state[2] is None and state[3] is None and state[4] is None
              and state[5] == -1 and state[6] == -1 and state[7] == 0 and (len(state) == 8 or not state[8]))
        if not ok or self._set:
            raise UnsafePickleError(f"{self._file}: unsupported numpy dtype state {state!r:.80} ({_PAYLOAD_HINT})")
        self._set = True
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


class _Sentinel:
    """Stands for an allowed global that may only be passed as an argument (``numpy.ndarray``)."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_NDARRAY = _Sentinel("numpy.ndarray")


def _array_from_bytes(file: str, raw: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    if not isinstance(dtype, _NumpyDType):
        raise UnsafePickleError(f"{file}: a numpy array whose dtype is not a plain numeric dtype ({_PAYLOAD_HINT})")
    if not (isinstance(shape, tuple) and len(shape) <= 32 and all(type(s) is int and s >= 0 for s in shape)):
        raise CheckpointError(f"{file}: invalid numpy array shape {shape!r:.80}")
    if not isinstance(raw, (bytes, bytearray)):
        raise UnsafePickleError(f"{file}: numpy array data is a {type(raw).__name__}, not bytes ({_PAYLOAD_HINT})")
    n = math.prod(shape)
    if len(raw) != n * dtype.dtype.itemsize:
        raise CheckpointError(f"{file}: numpy array of shape {shape} holds {len(raw)} bytes, "
                              f"expected {n * dtype.dtype.itemsize}")
    return np.frombuffer(bytes(raw), dtype=dtype.dtype).reshape(shape, order=order).copy()


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
        raise UnsafePickleError(f"{self.name}: refusing to load global '{module}.{name}' ({_PAYLOAD_HINT})")

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
                                    f"{state!r:.40}) ({_PAYLOAD_HINT})")
        return cls.__new__(cls)

    def _codecs_encode(self, text: Any, encoding: Any = None) -> bytes:
        if not (isinstance(text, str) and encoding in ("latin1", "latin-1")):
            raise UnsafePickleError(f"{self.name}: refusing _codecs.encode of a {type(text).__name__} with "
                                    f"{encoding!r:.20} (only latin1 text, as pickle writes bytes; {_PAYLOAD_HINT})")
        return text.encode("latin1")

    def _set(self, items: Any = ()) -> set:
        return set(self._set_items(items, "set"))

    def _frozenset(self, items: Any = ()) -> frozenset:
        return frozenset(self._set_items(items, "frozenset"))

    def _set_items(self, items: Any, what: str) -> list:
        if not isinstance(items, (list, tuple)) or not all(type(i) in (str, int) for i in items):
            raise UnsafePickleError(f"{self.name}: refusing {what}() of a {type(items).__name__} (only lists of "
                                    f"names; {_PAYLOAD_HINT})")
        return list(items)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.name}: refusing a persistent id ({_PAYLOAD_HINT})")

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
                                    f"({_PAYLOAD_HINT})")
        self._spend(len(b))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                obj = torch.load(io.BytesIO(bytes(b)), weights_only=True, map_location="cpu")
        except pickle.UnpicklingError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UnsafePickleError(f"{self.name}: refusing a tensor storage that is not plain tensor data "
                                    f"({first[:200]}; {_PAYLOAD_HINT})") from None
        except Exception as e:
            raise CheckpointError(f"{self.name}: unreadable tensor storage ({type(e).__name__}: "
                                  f"{str(e)[:200]})") from None
        if not isinstance(obj, torch.storage.TypedStorage):
            raise UnsafePickleError(f"{self.name}: a tensor storage decodes to a {type(obj).__name__} "
                                    f"({_PAYLOAD_HINT})")
        return obj

    def _rebuild_tensor_v2(self, storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                           backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
        if not isinstance(storage, torch.storage.TypedStorage):
            raise UnsafePickleError(f"{self.name}: a tensor built on a {type(storage).__name__}, not a storage "
                                    f"({_PAYLOAD_HINT})")
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
            raise UnsafePickleError(f"{self.name}: a parameter built from a {type(data).__name__} ({_PAYLOAD_HINT})")
        _check_no_hooks(self.name, backward_hooks)
        return data  # a plain tensor: parameters are data here

    # -- numpy ---------------------------------------------------------------------------------------------
    def _numpy_dtype(self, code: Any, align: Any = False, copy: Any = True) -> _NumpyDType:
        # numpy >= 1.? writes dtype(code, False, True), older numpy dtype(code, 0, 1)
        flag = lambda v: type(v) in (bool, int) and v in (0, 1)
        if not (isinstance(code, str) and _NUMPY_CODE.match(code) and flag(align) and flag(copy)):
            raise UnsafePickleError(f"{self.name}: refusing numpy dtype {code!r:.40} (only plain numeric dtypes; "
                                    f"{_PAYLOAD_HINT})")
        return _NumpyDType(self.name, code)

    def _numpy_scalar(self, dtype: Any, data: Any = None) -> np.generic:
        if not isinstance(dtype, _NumpyDType) or not isinstance(data, bytes):
            raise UnsafePickleError(f"{self.name}: refusing a numpy scalar of {dtype!r:.40} from a "
                                    f"{type(data).__name__} (only plain numeric scalars; {_PAYLOAD_HINT})")
        if len(data) != dtype.dtype.itemsize:
            raise CheckpointError(f"{self.name}: numpy {dtype.dtype} scalar of {len(data)} bytes")
        return np.frombuffer(data, dtype=dtype.dtype)[0].copy()

    def _numpy_reconstruct(self, subtype: Any, shape: Any, typecode: Any) -> NumpyArray:
        if subtype is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
            raise UnsafePickleError(f"{self.name}: refusing numpy _reconstruct({subtype!r:.40}, ...) "
                                    f"(only plain ndarrays; {_PAYLOAD_HINT})")
        return _BudgetedArray(self)

    def _numpy_frombuffer(self, buf: Any, dtype: Any, shape: Any, order: Any) -> NumpyArray:
        if order not in ("C", "F"):
            raise CheckpointError(f"{self.name}: numpy array with memory order {order!r:.20}")
        if isinstance(buf, (bytes, bytearray)):
            self._spend(len(buf))
        return NumpyArray(self.name, _array_from_bytes(self.name, buf, dtype, shape, order))


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
    raise UnsafePickleError(f"{file}: a tensor with backward hooks ({_PAYLOAD_HINT})")


# ----------------------------------------------------------------------------------------------------------------
# Plain data and flattening


def to_plain(obj: Any, where: str = "value", _depth: int = 0) -> Any:
    """Data of a record as plain Python (dict, list, tuple, str, int, float, bool, None).

    EasyDicts and OrderedDicts become dicts, numpy scalars and arrays Python numbers and lists.
    Tensors and persistent objects are not plain data: :class:`CheckpointError`.
    """
    if _depth > MAX_DEPTH:
        raise CheckpointError(f"{where}: nested too deeply")
    if isinstance(obj, np.generic):  # before the Python types: np.float64 is a float
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, NumpyArray):
        return obj.array.tolist() if obj.array is not None else None
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{where}: a key of type {type(k).__name__} ({k!r:.40})")
            out[k] = to_plain(v, f"{where}.{k}", _depth + 1)
        return out
    if isinstance(obj, (list, tuple)):
        items = [to_plain(v, f"{where}[{i}]", _depth + 1) for i, v in enumerate(obj)]
        return tuple(items) if isinstance(obj, tuple) else items
    if isinstance(obj, (set, frozenset)):
        items = [to_plain(v, where, _depth + 1) for v in obj]
        try:
            return sorted(items)
        except TypeError:
            return items
    raise CheckpointError(f"{where}: a {type(obj).__name__} is not plain data")


def _names(d: Any, what: str, where: str) -> dict:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise CheckpointError(f"{where}: {what} is a {type(d).__name__}, expected a dict")
    for k in d:
        if not isinstance(k, str) or not k or "." in k:
            raise CheckpointError(f"{where}: invalid name {k!r:.60} in {what}")
    return d


def flatten_state(record: PersistentRecord) -> OrderedDict[str, torch.Tensor]:
    """``state_dict()`` of a record: ``prefix + name`` for every parameter and persistent buffer
    (None entries and ``_non_persistent_buffers_set`` skipped), then each sub-module under
    ``prefix + child + '.'``, recursively. Tensors are returned detached."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    stack: set[int] = set()

    def visit(rec: PersistentRecord, prefix: str, depth: int) -> None:
        where = f"{record.where}: {prefix.rstrip('.') or rec.class_name}"
        if id(rec) in stack:
            raise CheckpointError(f"{where}: a module contains itself (corrupt pickle)")
        if depth > MAX_DEPTH:
            raise CheckpointError(f"{where}: modules nested too deeply")
        stack.add(id(rec))
        st = rec.state
        skip = st.get("_non_persistent_buffers_set") or set()
        if not isinstance(skip, (set, frozenset, list, tuple)):
            raise CheckpointError(f"{where}: _non_persistent_buffers_set is a {type(skip).__name__}")
        for what in ("_parameters", "_buffers"):
            for name, t in _names(st.get(what), what, where).items():
                if t is None or (what == "_buffers" and name in skip):
                    continue
                if type(t) is not torch.Tensor:
                    raise CheckpointError(f"{where}: {what}[{name!r}] is a {type(t).__name__}, not a tensor")
                if prefix + name in out:
                    raise CheckpointError(f"{where}: {prefix + name} is both a parameter and a buffer")
                out[prefix + name] = t.detach()
        for name, child in _names(st.get("_modules"), "_modules", where).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise CheckpointError(f"{where}: sub-module {name!r} is a {type(child).__name__}, not a "
                                      "persistent network object")
            visit(child, prefix + name + ".", depth + 1)
        stack.discard(id(rec))

    visit(record, "", 0)
    return out


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


def sha256_file(path: Union[str, Path], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


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


__all__ = ["CheckpointError", "UnsafePickleError", "PersistentRecord", "ModuleRecord", "NumpyArray", "OfficialPickle",
           "ALLOWED_GLOBALS", "MODULE_CLASS_PATTERNS", "PERSISTENCE_VERSION", "load_official_pickle", "unpickle_safely",
           "flatten_state", "module_records", "spectral_norms", "to_plain", "sha256_file"]
