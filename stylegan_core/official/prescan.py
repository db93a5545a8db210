"""A pass over a pickle's opcode stream before anything in it is unpickled: resource limits.

:func:`prescan` walks the stream with :func:`pickletools.genops` (which parses opcodes and their
arguments without executing anything) and simulates the unpickler's stack and memo with abstract
values, so that a small file cannot make the real unpickler (CPython's C ``_pickle``, which cannot be
interrupted while it hashes or allocates) or the code reading its result run for hours or exhaust
memory. It refuses, before a single object is built:

- more opcodes than :attr:`ScanLimits.max_opcodes` (the pass itself stays bounded in time);
- a memo index that is not the next free one or an existing one (``LONG_BINPUT`` at index 2**31
  makes the C unpickler allocate 16 bytes per index up to it), and a ``GET`` of an index never put;
- a dict key or set item whose hashing would walk more than :attr:`ScanLimits.max_hash_cost` tuple /
  frozenset elements (``t = (t, t)`` forty times over, re-referenced through the memo, is 2**40
  elements to hash: 656 bytes that never finish loading);
- a value that expands, through its re-references, to more than :attr:`ScanLimits.max_expanded`
  nodes (what a recursive reader of the result would visit), a container of more than
  :attr:`ScanLimits.max_items` items, nesting deeper than :attr:`ScanLimits.max_depth`;
- ``BUILD`` applied to a tensor (``torch.Tensor.__setstate__`` would set any storage offset, size
  and stride, bypassing the checks of ``_rebuild_tensor_v2``; the official pickles never do this);
- a protocol above 5.

Anything the scan cannot follow (a truncated stream, a stack underflow) is a :class:`CheckpointError`
("truncated or corrupt"). Which globals are allowed is not decided here but by the restricted
unpickler, which runs only after the scan passed.
"""
from __future__ import annotations

import gc
import pickletools
from dataclasses import dataclass
from typing import Any, Optional

from .records import PAYLOAD_HINT, CheckpointError, UnsafePickleError


@dataclass(frozen=True)
class ScanLimits:
    """Bounds of :func:`prescan`. The defaults leave a wide margin over official snapshots (a StyleGAN-XL
    snapshot with its two-backbone discriminator has ~1e5 opcodes, dict keys are strings, nesting < 100; the
    scan takes ~1 s per million opcodes)."""

    max_opcodes: int = 1_000_000
    max_memo: int = 1_000_000
    max_items: int = 200_000  # items of one list / dict / set / tuple
    max_depth: int = 400  # nesting of containers and calls
    max_hash_cost: int = 10_000  # tuple / frozenset elements hashed for one dict key or set item
    max_expanded: int = 1 << 24  # nodes of one value with its re-references expanded (also what hashing it walks)


#: Limits for the small pickles inside a tensor storage's bytes (torch's legacy format).
STORAGE_LIMITS = ScanLimits(max_opcodes=2_000, max_memo=1_000, max_items=100, max_depth=8, max_hash_cost=100,
                            max_expanded=10_000)

#: Globals whose call returns a tensor (``BUILD`` on their result is refused).
TENSOR_BUILDERS = frozenset({("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
                             ("torch._utils", "_rebuild_parameter_with_state"), ("torch._utils", "_rebuild_tensor"),
                             ("torch._utils", "_rebuild_from_type_v2"), ("torch._utils", "_rebuild_from_type"),
                             ("torch", "Tensor"), ("torch.nn.parameter", "Parameter"), ("torch", "tensor")})

_TEXT_MAX = 512  # strings longer than this are not kept (they only matter as STACK_GLOBAL names)


class _V:
    """An abstract value: what kind of object the unpickler would push, and what it would cost."""

    __slots__ = ("kind", "hcost", "size", "depth", "items", "text")

    def __init__(self, kind: str, hcost: int = 1, size: int = 1, depth: int = 0, text: Any = None):
        self.kind = kind  # 'atom', 'str', 'tuple', 'frozenset', 'list', 'dict', 'set', 'global', 'tensor', 'obj'
        self.hcost = hcost  # elements walked to hash it (identity-hashed objects: 1)
        self.size = size  # nodes, re-references expanded (saturating)
        self.depth = depth
        self.items = 0
        self.text = text  # str value (short strings) or (module, name) of a global


_ATOM = _V("atom")
_MARK = object()


def _corrupt(name: str, what: str) -> CheckpointError:
    return CheckpointError(f"{name}: truncated or corrupt pickle ({what})")


class _Scan:
    def __init__(self, name: str, limits: ScanLimits):
        self.name, self.lim = name, limits
        self.stack: list[_V] = []
        self.marks: list[int] = []
        self.memo: list[Optional[_V]] = []

    # -- helpers -------------------------------------------------------------------------------------------
    def too_much(self, what: str) -> CheckpointError:
        return CheckpointError(f"{self.name}: {what}: not an official network pickle (corrupt, or built to "
                               "exhaust time or memory); nothing of it was loaded")

    def pop(self) -> _V:
        fence = self.marks[-1] if self.marks else 0
        if len(self.stack) <= fence:
            raise _corrupt(self.name, "unpickling stack underflow")
        return self.stack.pop()

    def top(self) -> _V:
        fence = self.marks[-1] if self.marks else 0
        if len(self.stack) <= fence:
            raise _corrupt(self.name, "unpickling stack underflow")
        return self.stack[-1]

    def pop_mark(self) -> list[_V]:
        if not self.marks:
            raise _corrupt(self.name, "could not find MARK")
        at = self.marks.pop()
        items = self.stack[at:]
        del self.stack[at:]
        return items

    def new(self, kind: str, children: list[_V], text: Any = None) -> _V:
        """A value built from ``children`` (its elements, or a call's callable and arguments)."""
        lim = self.lim
        if len(children) > lim.max_items:
            raise self.too_much(f"a {kind} of more than {lim.max_items} items")
        size = 1 + sum(c.size for c in children)
        depth = 1 + max((c.depth for c in children), default=0)
        if size > lim.max_expanded:
            raise self.too_much(f"a value that expands to more than {lim.max_expanded} nodes through "
                                "re-references")
        if depth > lim.max_depth:
            raise self.too_much(f"values nested more than {lim.max_depth} levels deep")
        hcost = 1 + sum(c.hcost for c in children) if kind in ("tuple", "frozenset") else 1
        if kind == "frozenset":
            for c in children:
                self.hashed(c)
        v = _V(kind, hcost, size, depth, text)
        v.items = len(children)
        return v

    def hashed(self, key: _V) -> None:
        if key.hcost > self.lim.max_hash_cost:
            raise self.too_much(f"a dict key or set item that takes more than {self.lim.max_hash_cost} steps to "
                                "hash (nested tuples re-referenced through the memo)")

    def add(self, container: _V, children: list[_V], keys: list[_V] = ()) -> None:
        """Items added to a mutable container (APPEND(S), SETITEM(S), ADDITEMS): its size grows."""
        lim = self.lim
        for k in keys:
            self.hashed(k)
        container.items += len(children) - len(keys)
        if container.items > lim.max_items:
            raise self.too_much(f"a {container.kind} of more than {lim.max_items} items")
        container.size = min(container.size + sum(c.size for c in children), lim.max_expanded + 1)
        if container.size > lim.max_expanded:
            raise self.too_much(f"a value that expands to more than {lim.max_expanded} nodes through "
                                "re-references")
        depth = 1 + max((c.depth for c in children), default=0)
        if depth > container.depth:
            container.depth = depth
            if depth > lim.max_depth:
                raise self.too_much(f"values nested more than {lim.max_depth} levels deep")

    def memo_get(self, idx: Any) -> _V:
        if not isinstance(idx, int) or not 0 <= idx < len(self.memo) or self.memo[idx] is None:
            raise _corrupt(self.name, f"memo key {idx!r:.20} was never stored")
        return self.memo[idx]

    def memo_put(self, idx: Any) -> None:
        if not isinstance(idx, int) or not 0 <= idx <= len(self.memo):
            raise self.too_much(f"memo index {idx!r:.20} out of sequence (next free index: {len(self.memo)})")
        if idx == len(self.memo):
            if len(self.memo) >= self.lim.max_memo:
                raise self.too_much(f"more than {self.lim.max_memo} memo entries")
            self.memo.append(self.top())
        else:
            self.memo[idx] = self.top()

    # -- the opcodes ---------------------------------------------------------------------------------------
    def run(self, stream: Any) -> int:
        lim = self.lim
        table = self.table()
        n = 0
        gc_was = gc.isenabled()
        gc.disable()  # the abstract values form no cycles; collections would only slow the scan down
        try:
            for op, arg, _pos in pickletools.genops(stream):
                n += 1
                if n > lim.max_opcodes:
                    raise self.too_much(f"more than {lim.max_opcodes} opcodes")
                handler = table.get(op.name)
                if handler is None:  # pickletools knows every opcode of protocols 0-5; new ones wait for a review
                    raise _corrupt(self.name, f"opcode {op.name} is not read")
                handler(arg)
                if op.name == "STOP":
                    return n
        except (ValueError, EOFError) as e:  # genops: truncated stream, unknown opcode, bad argument
            raise _corrupt(self.name, f"{type(e).__name__}: {str(e)[:160]}") from None
        finally:
            if gc_was:
                gc.enable()
        raise _corrupt(self.name, "no STOP opcode")

    def table(self) -> dict:
        """opcode name -> handler(arg): the stack effect of each opcode on abstract values."""
        stack, push, pop, top, pop_mark = self.stack, self.stack.append, self.pop, self.top, self.pop_mark

        def atom(arg: Any) -> None:
            push(_ATOM)

        def text(arg: Any) -> None:
            push(_V("str", text=arg if isinstance(arg, str) and len(arg) <= _TEXT_MAX else None))

        def empty(kind: str):
            return lambda arg: push(_V(kind))

        def put(arg: Any) -> None:
            self.memo_put(int(arg) if isinstance(arg, str) else arg)

        def get(arg: Any) -> None:
            push(self.memo_get(int(arg) if isinstance(arg, str) else arg))

        def append(arg: Any) -> None:
            v = pop()
            self.add(top(), [v])

        def appends(arg: Any) -> None:
            items = pop_mark()
            self.add(top(), items)

        def setitem(arg: Any) -> None:
            v, k = pop(), pop()
            self.add(top(), [k, v], keys=[k])

        def setitems(arg: Any) -> None:
            items = pop_mark()
            if len(items) % 2:
                raise _corrupt(self.name, "odd number of items for SETITEMS")
            self.add(top(), items, keys=items[0::2])

        def additems(arg: Any) -> None:
            items = pop_mark()
            self.add(top(), items, keys=items)

        def build(kind: str):
            def handler(arg: Any) -> None:
                items = pop_mark()
                if kind == "dict":
                    if len(items) % 2:
                        raise _corrupt(self.name, "odd number of items for DICT")
                    for k in items[0::2]:
                        self.hashed(k)
                push(self.new(kind, items))
            return handler

        def tuple_n(k: int):
            def handler(arg: Any) -> None:
                items = [pop() for _ in range(k)][::-1]
                push(self.new("tuple", items))
            return handler

        def pop_op(arg: Any) -> None:
            if self.marks and self.marks[-1] == len(stack):
                self.marks.pop()
            else:
                pop()

        def glob(arg: Any) -> None:
            module, _, gname = str(arg).partition(" ")
            push(_V("global", text=(module, gname)))

        def stack_global(arg: Any) -> None:
            gname, module = pop(), pop()
            if module.kind != "str" or gname.kind != "str":
                raise _corrupt(self.name, "STACK_GLOBAL requires str")
            push(_V("global", text=(module.text, gname.text) if module.text and gname.text else None))

        def call(n_args: int):
            def handler(arg: Any) -> None:
                parts = [pop() for _ in range(n_args + 1)][::-1]
                fn = parts[0]
                # a global named through an extension code (or a name too long to keep) may be a tensor builder
                kind = "tensor" if fn.kind == "global" and (fn.text is None or fn.text in TENSOR_BUILDERS) else "obj"
                push(self.new(kind, parts))
            return handler

        def obj(arg: Any) -> None:
            items = pop_mark()
            if not items:
                raise _corrupt(self.name, "OBJ without a class")
            push(self.new("obj", items))

        def inst(arg: Any) -> None:
            items = pop_mark()
            module, _, gname = str(arg).partition(" ")
            push(self.new("tensor" if (module, gname) in TENSOR_BUILDERS else "obj", items))

        def build_state(arg: Any) -> None:
            state = pop()
            target = top()
            if target.kind == "tensor":
                raise UnsafePickleError(f"{self.name}: refusing a state (BUILD) applied to a tensor: its storage, "
                                        "offset, size and stride are set only through _rebuild_tensor_v2 "
                                        f"({PAYLOAD_HINT})")
            self.add(target, [state])

        def binpersid(arg: Any) -> None:
            push(self.new("obj", [pop()]))

        def proto(arg: Any) -> None:
            if not isinstance(arg, int) or arg > 5:
                raise _corrupt(self.name, f"unsupported pickle protocol {arg!r:.20}")

        table = {name: atom for name in ("BININT", "BININT1", "BININT2", "INT", "LONG", "LONG1", "LONG4", "BINFLOAT",
                                         "FLOAT", "NONE", "NEWTRUE", "NEWFALSE", "BINBYTES", "SHORT_BINBYTES",
                                         "BINBYTES8", "BYTEARRAY8")}
        table.update({name: text for name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
                                              "BINSTRING", "SHORT_BINSTRING")})
        table.update({name: put for name in ("BINPUT", "LONG_BINPUT", "PUT")})
        table.update({name: get for name in ("BINGET", "LONG_BINGET", "GET")})
        table.update({
            "MEMOIZE": lambda arg: self.memo_put(len(self.memo)),
            "MARK": lambda arg: self.marks.append(len(stack)),
            "EMPTY_LIST": empty("list"), "EMPTY_DICT": empty("dict"), "EMPTY_SET": empty("set"),
            "EMPTY_TUPLE": empty("tuple"),
            "APPEND": append, "APPENDS": appends, "SETITEM": setitem, "SETITEMS": setitems, "ADDITEMS": additems,
            "TUPLE": build("tuple"), "LIST": build("list"), "DICT": build("dict"), "FROZENSET": build("frozenset"),
            "TUPLE1": tuple_n(1), "TUPLE2": tuple_n(2), "TUPLE3": tuple_n(3),
            "POP": pop_op, "POP_MARK": lambda arg: pop_mark(), "DUP": lambda arg: push(top()),
            "GLOBAL": glob, "STACK_GLOBAL": stack_global,
            "EXT1": lambda arg: push(_V("global")), "EXT2": lambda arg: push(_V("global")),
            "EXT4": lambda arg: push(_V("global")),
            "REDUCE": call(1), "NEWOBJ": call(1), "NEWOBJ_EX": call(2), "OBJ": obj, "INST": inst,
            "BUILD": build_state, "PERSID": lambda arg: push(_V("obj")), "BINPERSID": binpersid,
            "NEXT_BUFFER": lambda arg: push(_V("obj")), "READONLY_BUFFER": lambda arg: top(),
            "PROTO": proto, "FRAME": lambda arg: None, "STOP": lambda arg: pop(),
        })
        return table


def prescan(stream: Any, name: str, limits: ScanLimits = ScanLimits()) -> int:
    """Scan one pickle (bytes, or a binary file positioned at its start; the position is left after its STOP);
    returns the number of opcodes. Raises :class:`CheckpointError` / :class:`UnsafePickleError`."""
    return _Scan(name, limits).run(stream)


__all__ = ["ScanLimits", "STORAGE_LIMITS", "TENSOR_BUILDERS", "prescan"]
