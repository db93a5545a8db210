"""Official network pickles as data: the records the safe unpickler builds, and how importers read them.

The unpickler (:mod:`stylegan_core.official.unpickler`) turns every network object of an official
snapshot into a record of this module, never into the class the pickle names:

- a ``torch_utils.persistence`` object (NVIDIA's StyleGAN2-ADA / StyleGAN3 networks) becomes a
  :class:`PersistentRecord`: ``class_name``, ``version``, the sha256 of its ``module_src`` (the
  source itself is dropped) and ``state`` (its ``__dict__``);
- a plain ``nn.Module`` of an allowed class (torch layers, spectral-norm hooks, timm layers,
  ``pg_modules``: how Projected GAN and StyleGAN-XL pickle their networks) becomes an instance of a
  :class:`ModuleRecord` subclass named after the class, created empty and filled once by ``BUILD``;
- a numpy array becomes a :class:`NumpyArray` decoded from a validated numeric dtype;
- what ``dill`` adds to StyleGAN-XL snapshots (functions and their code objects, closure cells, bound
  methods, references to modules and their attributes: the ViT backbone's forward hooks and injected
  methods) becomes an :class:`OpaqueRecord`: a name kept for messages, never created, imported or
  called. They are hooks, not weights: importers never read them.

Importers (the plugins' ``convert_official_network`` hooks) read a record through
:attr:`PersistentRecord.init_kwargs`, :attr:`~PersistentRecord.attributes`,
:meth:`~PersistentRecord.children`, :meth:`~PersistentRecord.state_dict` (weights by ``state_dict()``
name, through nested persistent and module records alike: spectral norm's ``weight_orig`` /
``weight_u`` / ``weight_v``, batch norm's running statistics and ``num_batches_tracked`` included),
:func:`module_records` and :func:`spectral_norms`. Everything here is data; nothing is imported or run.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Optional

import numpy as np
import torch

#: The only persistence format we read (torch_utils/persistence.py ``_version``).
PERSISTENCE_VERSION = 6
MAX_DEPTH = 64  # nesting of modules / plain data
MAX_PLAIN_NODES = 200_000  # values one to_plain() call may visit (shared values are visited once per reference)
MAX_MODULE_VISITS = 200_000  # records one flatten / module walk may visit (a module shared by two parents: twice)
PAYLOAD_HINT = "not an official network pickle, or a pickle carrying a payload"


def _brief_repr():
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxtuple, r.maxlist, r.maxdict, r.maxset, r.maxfrozenset = 3, 4, 4, 4, 4, 4
    r.maxstring, r.maxother, r.maxlong = 40, 40, 40
    return r


_BRIEF = _brief_repr()


def brief(obj: Any, n: int = 60) -> str:
    """A short repr of an untrusted value for messages: bounded in depth and items (``repr`` of a value
    whose re-references nest 40 levels would never finish), cut to ``n`` characters."""
    try:
        text = _BRIEF.repr(obj)
    except Exception:  # a record whose repr fails: its type is enough
        text = f"<{type(obj).__name__}>"
    return text if len(text) <= n else text[:n - 3] + "..."


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
                                f"({PAYLOAD_HINT})")

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

    The unpickler makes one subclass of this per recorded class (see :data:`.unpickler.MODULE_CLASS_PATTERNS`); its
    instances are created empty (no arguments) and filled by exactly one ``BUILD``. Calling the class
    (``REDUCE``/``INST``/``OBJ``) or constructing it with arguments is refused: an official pickle never does.
    """

    __slots__ = ("module", "_built")
    _official: tuple[str, str] = ("", "")  # set on each per-class subclass
    _source_file: str = "<pickle>"

    def __new__(cls, *args: Any, **kwargs: Any) -> "ModuleRecord":
        module, name = cls._official
        if cls is ModuleRecord or not name:
            raise UnsafePickleError(f"{cls._source_file}: a module record without its class ({PAYLOAD_HINT})")
        if args or kwargs:
            raise UnsafePickleError(f"{cls._source_file}: refusing to construct '{module}.{name}' with arguments "
                                    f"({PAYLOAD_HINT})")
        obj = object.__new__(cls)
        PersistentRecord.__init__(obj, name, 0, "", {}, file=cls._source_file)
        obj.module = module
        obj._built = False
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # only reached when the stream *calls* the class
        raise UnsafePickleError(f"{self.file}: refusing to call '{self.module}.{self.class_name}' "
                                f"({PAYLOAD_HINT})")

    def __setstate__(self, state: Any) -> None:
        if self._built:
            raise UnsafePickleError(f"{self.file}: state applied twice to a '{self.qualified_name}' object "
                                    f"({PAYLOAD_HINT})")
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
    visits = [MAX_MODULE_VISITS]

    def visit(rec: PersistentRecord, prefix: str, depth: int) -> None:
        visits[0] -= 1
        if visits[0] < 0:
            raise CheckpointError(f"{record.where}: more than {MAX_MODULE_VISITS} sub-modules (modules shared "
                                  "by several parents counted each time): corrupt pickle")
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
            raise UnsafePickleError(f"{self._file}: state applied twice to a numpy array ({PAYLOAD_HINT})")
        if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
            raise CheckpointError(f"{self._file}: unsupported numpy array state")
        _, shape, dtype, fortran, raw = state
        self.array = array_from_bytes(self._file, raw, dtype, shape, "F" if fortran else "C")

    def __repr__(self) -> str:
        return f"NumpyArray({self.array!r})"


class NumpyDType:
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
            raise UnsafePickleError(f"{self._file}: unsupported numpy dtype state {brief(state, 80)} ({PAYLOAD_HINT})")
        self._set = True
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


class OpaqueRecord:
    """Something a dill-written snapshot carries that is neither data nor weights: a function, its code
    object, a closure cell, a bound method, a module or one of its attributes. Only a short name is kept
    (``what``: ``'function'``, ``'code'``, ...; ``name``: e.g. ``'feature_networks.vit.forward_flex'``);
    the object itself is never created, imported or called. Calling a record is refused, and so is applying
    a state to it, except the one ``BUILD`` dill writes after a function (its ``__dict__`` and
    ``__qualname__``), which is recorded and ignored."""

    __slots__ = ("what", "name", "file", "refs", "_built")

    def __init__(self, what: str, name: str, file: str, refs: tuple = ()):
        self.what, self.name, self.file, self.refs, self._built = what, name, file, refs, False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError(f"{self.file}: refusing to call the {self.what} {self.name!r} recorded in the pickle "
                                f"(functions in a snapshot are never run; {PAYLOAD_HINT})")

    def __setstate__(self, state: Any) -> None:
        if self.what != "function" or self._built:
            raise UnsafePickleError(f"{self.file}: unexpected state applied to the {self.what} {self.name!r} "
                                    f"({PAYLOAD_HINT})")
        self._built = True
        if isinstance(state, tuple) and len(state) == 2:
            qual = [d.get("__qualname__") for d in state if isinstance(d, dict)]
            if qual and isinstance(qual[-1], str) and len(qual[-1]) <= 200:
                self.name = qual[-1]

    def __repr__(self) -> str:
        return f"OpaqueRecord({self.what} {self.name!r})"


class CellRecord(OpaqueRecord):
    """A closure cell (dill ``_create_cell``); ``contents`` may be set once (dill's ``setattr`` post-step)."""

    __slots__ = ("contents",)

    def __init__(self, file: str, contents: Any = None):
        super().__init__("cell", "cell", file)
        self.contents = contents


def array_from_bytes(file: str, raw: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    if not isinstance(dtype, NumpyDType):
        raise UnsafePickleError(f"{file}: a numpy array whose dtype is not a plain numeric dtype ({PAYLOAD_HINT})")
    if not (isinstance(shape, tuple) and len(shape) <= 32 and all(type(s) is int and s >= 0 for s in shape)):
        raise CheckpointError(f"{file}: invalid numpy array shape {brief(shape, 80)}")
    if not isinstance(raw, (bytes, bytearray)):
        raise UnsafePickleError(f"{file}: numpy array data is a {type(raw).__name__}, not bytes ({PAYLOAD_HINT})")
    n = math.prod(shape)
    if len(raw) != n * dtype.dtype.itemsize:
        raise CheckpointError(f"{file}: numpy array of shape {shape} holds {len(raw)} bytes, "
                              f"expected {n * dtype.dtype.itemsize}")
    return np.frombuffer(bytes(raw), dtype=dtype.dtype).reshape(shape, order=order).copy()


# ----------------------------------------------------------------------------------------------------------------
# Plain data and flattening


def to_plain(obj: Any, where: str = "value", _depth: int = 0, _budget: Optional[list] = None) -> Any:
    """Data of a record as plain Python (dict, list, tuple, str, int, float, bool, None).

    EasyDicts and OrderedDicts become dicts, numpy scalars and arrays Python numbers and lists.
    Tensors and persistent objects are not plain data: :class:`CheckpointError`. At most
    :data:`MAX_PLAIN_NODES` values are visited (a value re-referenced many times counts each time).
    """
    if _budget is None:
        _budget = [MAX_PLAIN_NODES]
    _budget[0] -= 1
    if _budget[0] < 0:
        raise CheckpointError(f"{where}: more than {MAX_PLAIN_NODES} values (re-referenced values counted each "
                              "time): not the arguments of an official network")
    if _depth > MAX_DEPTH:
        raise CheckpointError(f"{where}: nested too deeply")
    if isinstance(obj, np.generic):  # before the Python types: np.float64 is a float
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (NumpyArray, np.ndarray)):
        arr = obj.array if isinstance(obj, NumpyArray) else obj
        if arr is None:
            return None
        _budget[0] -= arr.size
        if _budget[0] < 0:
            raise CheckpointError(f"{where}: a numpy array of {arr.size} values is not plain data")
        return arr.tolist()
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise CheckpointError(f"{where}: a key of type {type(k).__name__} ({brief(k, 40)})")
            out[k] = to_plain(v, f"{where}.{k}", _depth + 1, _budget)
        return out
    if isinstance(obj, (list, tuple)):
        items = [to_plain(v, f"{where}[{i}]", _depth + 1, _budget) for i, v in enumerate(obj)]
        return tuple(items) if isinstance(obj, tuple) else items
    if isinstance(obj, (set, frozenset)):
        items = [to_plain(v, where, _depth + 1, _budget) for v in obj]
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
            raise CheckpointError(f"{where}: invalid name {brief(k)} in {what}")
    return d


def flatten_state(record: PersistentRecord) -> OrderedDict[str, torch.Tensor]:
    """``state_dict()`` of a record: ``prefix + name`` for every parameter and persistent buffer
    (None entries and ``_non_persistent_buffers_set`` skipped), then each sub-module under
    ``prefix + child + '.'``, recursively. Tensors are returned detached."""
    out: OrderedDict[str, torch.Tensor] = OrderedDict()
    stack: set[int] = set()
    visits = [MAX_MODULE_VISITS]

    def visit(rec: PersistentRecord, prefix: str, depth: int) -> None:
        where = f"{record.where}: {prefix.rstrip('.') or rec.class_name}"
        visits[0] -= 1
        if visits[0] < 0:
            raise CheckpointError(f"{record.where}: more than {MAX_MODULE_VISITS} sub-modules (modules shared by "
                                  "several parents counted each time): corrupt pickle")
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


__all__ = ["CheckpointError", "UnsafePickleError", "PersistentRecord", "ModuleRecord", "NumpyArray", "OpaqueRecord",
           "CellRecord", "PERSISTENCE_VERSION", "brief", "flatten_state", "module_records", "spectral_norms",
           "to_plain"]
