"""Fuzz the official-checkpoint import with mutated official-layout snapshots.

Seeds (written as tests/test_official_pickle.py and tests/test_pg_xl_import.py write them, no official code):
a small StyleGAN2 snapshot (G, D, G_ema as ``torch_utils.persistence`` records, numpy attributes, EasyDicts)
pickled with protocols 2 and 4, and, when dill is installed, a StyleGAN-XL-like snapshot whose discriminator
holds a ViT with dill-pickled hooks and bound methods. Each case applies 1-3 mutations to a seed:

- ``flip``: an opcode replaced by another opcode;
- ``length``: a length field (strings, bytes, frames) changed (off by a little, or huge);
- ``memo``: a memo index (``BINGET``/``BINPUT``/...) moved to another or an absent index;
- ``int``: an integer argument replaced by 0, -1, a large value or a neighbour;
- ``splice``: a slice of the stream duplicated, deleted or moved (re-references and nesting change);
- ``bytes``: random bytes overwritten.

Every case goes through ``build_from_checkpoint`` (read, convert, build, load the weights). It must end in an
import or a ``CheckpointError`` (unsafe, unreadable or unconvertible, exit code 4) or a ``SpecError``
(exit code 2); anything else is a bug, printed with the case's seed and mutations, and the script exits 1.
A case that runs longer than ``--timeout`` seconds is dumped to ``--keep`` and the process stops (the C
unpickler cannot be interrupted). Prints the counts by outcome and mutation, the error kinds, the slowest case
and the peak memory.

    python bench/fuzz_pickles.py [--cases 2000] [--seed 0] [--timeout 60] [--keep DIR]
"""
from __future__ import annotations

import argparse
import faulthandler
import pickletools
import random
import resource
import re
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import torch  # noqa: E402

from stylegan_core.official import CheckpointError, build_from_checkpoint  # noqa: E402
from stylegan_core.plugins import load_plugins  # noqa: E402
from stylegan_core.spec import SpecError  # noqa: E402

OPCODES = [op.code.encode("latin1") for op in pickletools.opcodes]
LENGTH_OPS = {"SHORT_BINUNICODE": 1, "SHORT_BINBYTES": 1, "SHORT_BINSTRING": 1, "BINUNICODE": 4, "BINBYTES": 4,
              "BINSTRING": 4, "BINUNICODE8": 8, "BINBYTES8": 8, "BYTEARRAY8": 8, "FRAME": 8}
MEMO_OPS = {"BINGET": 1, "BINPUT": 1, "LONG_BINGET": 4, "LONG_BINPUT": 4}
INT_OPS = {"BININT1": 1, "BININT2": 2, "BININT": 4}


def seeds() -> dict[str, bytes]:
    """The official-layout snapshots mutated by the cases."""
    import pickle

    import official_snapshots as top

    canary = Path(tempfile.gettempdir()) / "fuzz-pickles-canary.txt"
    out = {}
    nets = top.small_snapshot()
    for proto in (2, 4):
        real = pickle.dumps
        top.pickle.dumps = lambda obj, protocol=None, _p=proto: real(obj, protocol=_p)
        try:
            out[f"stylegan2-p{proto}"] = top.snapshot_bytes(nets, canary)
        finally:
            top.pickle.dumps = real
    try:
        import dill  # noqa: F401

        import official_snapshots as xl

        vit = xl.xl_vit_module(canary)
        torch.manual_seed(0)
        D = xl.XLProjectedDiscriminator(vit).eval().requires_grad_(False)
        data = {"G_ema": top.network_meta(*top.small_network("G", seed=3),
                                          top.canary_source(canary, "training/networks_stylegan2.py")), "D": D}
        with top.official_names(), xl.xl_names(vit):
            out["xl-dill"] = dill.dumps(data)
    except ImportError:
        print("dill not installed: the dill seed is skipped")
    return out


def ops_of(data: bytes) -> list[tuple[str, int, int]]:
    """(opcode name, position, position of the next opcode) for the stream (until STOP)."""
    out = []
    prev = None
    for op, _arg, pos in pickletools.genops(data):
        if prev is not None:
            out.append((prev[0], prev[1], pos))
        prev = (op.name, pos)
    if prev is not None:
        out.append((prev[0], prev[1], prev[1] + 1))
    return out


def mutate(data: bytes, ops: list[tuple[str, int, int]], rng: random.Random) -> tuple[bytes, str]:
    kind = rng.choice(["flip", "length", "memo", "int", "splice", "bytes"])
    b = bytearray(data)
    if kind == "flip":
        name, pos, _ = rng.choice(ops)
        b[pos:pos + 1] = rng.choice(OPCODES)
    elif kind in ("length", "memo", "int"):
        table = {"length": LENGTH_OPS, "memo": MEMO_OPS, "int": INT_OPS}[kind]
        cands = [o for o in ops if o[0] in table]
        if not cands:
            return bytes(b), kind
        name, pos, _ = rng.choice(cands)
        n = table[name]
        field = pos + 1
        old = int.from_bytes(b[field:field + n], "little", signed=(name == "BININT"))
        new = rng.choice([old + rng.randint(-3, 3), 0, (1 << (8 * n - 1)) - 1, rng.randrange(1 << (8 * n - 1)),
                          old * 2, old // 2])
        if kind == "memo" and rng.random() < 0.5:
            new = rng.randrange(max(old + 1, 1))  # another existing index
        new = max(min(new, (1 << (8 * n - 1)) - 1), -(1 << (8 * n - 1)) if name == "BININT" else 0)
        b[field:field + n] = new.to_bytes(n, "little", signed=(name == "BININT"))
    elif kind == "splice":
        i = rng.randrange(len(ops))
        j = min(len(ops) - 1, i + rng.randint(1, 40))
        start, end = ops[i][1], ops[j][1]
        chunk = bytes(b[start:end])
        how = rng.choice(["dup", "del", "move"])
        if how == "dup":
            b[start:start] = chunk * rng.randint(1, 8)
        elif how == "del":
            del b[start:end]
        else:
            del b[start:end]
            at = rng.randrange(len(b))
            b[at:at] = chunk
        kind = f"splice-{how}"
    else:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b), kind


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_KIND = re.compile(r"(refusing to load global|refusing [a-z ]+|truncated or corrupt|not a readable network pickle|"
                   r"more than \d+ [a-z ]+|decodes to more|memo index|nested|disagrees with the weights|"
                   r"no loaded plugin converts|cannot convert|not plausible|do not fit|tensor storage|"
                   r"invalid tensor geometry|not the dict of networks|no generator)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds one case may take before the run stops")
    ap.add_argument("--keep", type=Path, default=Path(tempfile.gettempdir()) / "fuzz-pickles",
                    help="where the case that hangs or fails is written")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    plugins = load_plugins()
    base = seeds()
    parsed = {k: ops_of(v) for k, v in base.items()}
    rng = random.Random(args.seed)
    outcomes: Counter[str] = Counter()
    by_mutation: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    failures: list[str] = []
    slowest = (0.0, "")
    rss0 = rss_mb()
    args.keep.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "network-snapshot.pkl"
        for case in range(args.cases):
            name = rng.choice(sorted(base))
            data, kinds = base[name], []
            for _ in range(rng.randint(1, 3)):
                try:
                    ops = parsed[name] if not kinds else ops_of(data)
                except (ValueError, EOFError):
                    ops = parsed[name]
                data, k = mutate(data, ops, rng)
                kinds.append(k)
            label = f"case {case} ({name}: {', '.join(kinds)})"
            path.write_bytes(data)
            (args.keep / "current.pkl").write_bytes(data)
            faulthandler.dump_traceback_later(args.timeout, exit=True)
            t = time.perf_counter()
            try:
                build_from_checkpoint(path, plugins)
                out = "imported"
            except CheckpointError as e:
                out = f"refused ({type(e).__name__})"
                m = _KIND.search(str(e))
                errors[m.group(1) if m else str(e)[len(str(path)):][:60]] += 1
                if "\n" in str(e).strip() or not str(e).startswith(str(path)):
                    failures.append(f"{label}: message not one line naming the file: {str(e)[:300]}")
            except SpecError:
                out = "spec error"
            except Exception as e:  # noqa: BLE001 (the outcome under test)
                out = "UNEXPECTED"
                failures.append(f"{label}: {type(e).__name__}: {str(e)[:300]}")
                (args.keep / f"unexpected-{case}.pkl").write_bytes(data)
            finally:
                faulthandler.cancel_dump_traceback_later()
            dt = time.perf_counter() - t
            if dt > slowest[0]:
                slowest = (dt, label)
            outcomes[out] += 1
            for k in kinds:
                by_mutation[k] += 1
            if (case + 1) % 500 == 0:
                print(f"... {case + 1} cases, {time.time() - t0:.0f} s", flush=True)
    dt = time.time() - t0
    print(f"{args.cases} cases in {dt:.1f} s ({dt / max(args.cases, 1) * 1000:.1f} ms per case), seeds "
          f"{', '.join(f'{k} ({len(v)} B)' for k, v in base.items())}")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in outcomes.most_common()))
    print("mutations: " + ", ".join(f"{k} {v}" for k, v in by_mutation.most_common()))
    print("refusals by kind: " + ", ".join(f"{k!r} {v}" for k, v in errors.most_common(12)))
    print(f"slowest case: {slowest[0]:.2f} s ({slowest[1]})")
    print(f"peak memory: {rss_mb():.0f} MB (after loading plugins and seeds: {rss0:.0f} MB)")
    print(f"unexpected exceptions: {len(failures)}")
    for f in failures[:20]:
        print("  " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
