"""Fuzz the spec loader with many cases: mutated valid specs, random YAML text, deep nesting, huge
numbers, wrong types, unicode, anchors and aliases (including alias bombs).

Every case must end in success or a ``SpecError`` whose issues carry a location; any other
exception is a bug and is printed with the input that caused it. Peak memory is reported.
Not a test (the tests run a few hundred cases of the same strategies).

    python bench/fuzz_specs.py [--cases 10000] [--seed 0]
"""
from __future__ import annotations

import argparse
import random
import resource
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from stylegan_core.plugins import load_plugins
from stylegan_core.spec import DEFAULT_SPEC, SpecError, load_spec

KEYS = ["generator", "mapping", "synthesis", "discriminator", "loss", "regularizers", "data", "train", "run",
        "type", "z_dim", "w_dim", "batch_size", "kimg", "gamma", "interval", "extends", "architecture", "metrics"]
WEIRD = [None, True, 0, -1, 10 ** 40, -10 ** 40, 1e308, float("inf"), float("nan"), "", "é∂ƒ漢字🙂", "x" * 5000,
         [], {}, [1, [2, [3]]], {"type": "stylegan2.mapping"}, "stylegan2.mapping", "2e-3", "no", "0o17"]


def mutate(rng: random.Random, data):
    """One random edit of a nested spec: replace, delete or add a key, or swap a part type."""
    path = []
    cur = data
    while isinstance(cur, (dict, list)) and cur and rng.random() < 0.7:
        key = rng.choice(list(cur)) if isinstance(cur, dict) else rng.randrange(len(cur))
        path.append((cur, key))
        cur = cur[key]
    if not path:
        data[rng.choice(KEYS)] = rng.choice(WEIRD)
        return data
    parent, key = path[-1]
    r = rng.random()
    if r < 0.5:
        parent[key] = rng.choice(WEIRD)
    elif r < 0.7 and isinstance(parent, dict):
        del parent[key]
    elif isinstance(parent, dict):
        parent[rng.choice(KEYS) + rng.choice(["", "s", "_"])] = rng.choice(WEIRD)
    return data


def random_text(rng: random.Random) -> str:
    kind = rng.randrange(6)
    if kind == 0:  # random characters
        return "".join(rng.choice("ab:{}[]-, \n\t'\"&*!|>#%@`é漢\x00\x1f") for _ in range(rng.randrange(200)))
    if kind == 1:  # deep nesting
        n = rng.randrange(10, 3000)
        return "a: " + "[" * n + "]" * n + "\n"
    if kind == 2:  # alias bomb
        width, depth = rng.randrange(2, 12), rng.randrange(2, 12)
        lines = [f"a0: &a0 [{', '.join(['x'] * width)}]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, depth)]
        return "\n".join(lines) + "\n"
    if kind == 3:  # tags and merges
        return rng.choice(["a: !!python/object/apply:os.system ['true']\n", "a: !!binary aGk=\n",
                           "base: &b {x: 1}\ntrain: {<<: *b, batch_size: 4}\n", "a: !custom 1\n", "? [1, 2]\n: 3\n"])
    if kind == 4:  # huge numbers and odd scalars
        return f"train: {{batch_size: {rng.choice(['1' * 400, '-0', '.inf', '0x1F', '1_000', '1e999'])}}}\n"
    return yaml.safe_dump({rng.choice(KEYS): rng.choice(WEIRD) for _ in range(rng.randrange(1, 6))},
                          allow_unicode=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    registry = load_plugins().registry
    base = yaml.safe_load(DEFAULT_SPEC.read_text())
    outcomes: Counter[str] = Counter()
    failures = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.yaml"
        for i in range(args.cases):
            if rng.random() < 0.5:
                import copy

                data = copy.deepcopy(base)
                for _ in range(rng.randrange(1, 4)):
                    data = mutate(rng, data)
                try:
                    text = yaml.safe_dump(data, allow_unicode=True)
                except Exception:
                    text = "a: 1\n"
            else:
                text = random_text(rng)
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
            try:
                load_spec(path, [], registry)
                outcomes["valid"] += 1
            except SpecError as e:
                ok = e.issues and all(x.line >= 1 and x.col >= 1 and x.file for x in e.issues)
                outcomes[f"spec error (exit {e.exit_code})" if ok else "spec error WITHOUT location"] += 1
                if not ok:
                    failures.append((text[:300], str(e)))
            except Exception as e:  # a bug
                outcomes["OTHER EXCEPTION"] += 1
                failures.append((text[:300], f"{type(e).__name__}: {e}"))
    dt = time.time() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.cases} cases in {dt:.1f} s ({args.cases / dt:.0f}/s), peak RSS {rss:.0f} MB")
    for k, v in outcomes.most_common():
        print(f"  {k:<28} {v}")
    for text, err in failures[:10]:
        print("---\n" + repr(text[:200]) + "\n-> " + err[:300])
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
