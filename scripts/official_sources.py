"""Regenerate stylegan_core/official/official_sources.json: the sha256 of every released version of the
official modules whose source ``torch_utils.persistence`` embeds in a network pickle.

NVIDIA's persistence (``torch_utils/persistence.py``, ``_module_to_src``) stores a persistent class's whole
module as ``inspect.getsource(module)``: the file's text as ``linecache`` reads it (decoded as its PEP 263
encoding declares, UTF-8 by default; universal newlines; a final newline added when the file lacks one). The
importer hashes that string encoded as UTF-8 and compares it with this table: a pickle whose embedded
source is not in it was made by modified code.

For each repository given, every commit of its history is visited; every ``.py`` file that declares a
persistent class (``@persistence.persistent_class``) at that commit is hashed as above and recorded once per
distinct content, with the first commit (and its date) that had it. Only hashes, paths, commits and dates
are written: no official code is copied.

    python scripts/official_sources.py NVlabs/stylegan3=/work/.mirror/NVlabs+stylegan3/repo \\
        NVlabs/stylegan2-ada-pytorch=/work/.mirror/NVlabs+stylegan2-ada-pytorch/repo \\
        autonomousvision/projected-gan=/work/.mirror/autonomousvision+projected-gan/repo \\
        autonomousvision/stylegan-xl=/work/.mirror/autonomousvision+stylegan-xl/repo

Each ``NAME=PATH`` is a git directory (bare or ``.git``) or a work tree with one (its whole history is read),
or a plain checkout without git (its files are hashed as they are, commit ``null``). ``--out FILE`` writes
elsewhere; ``--check`` compares with the existing table and exits 1 when it would change.
"""
from __future__ import annotations

import argparse
import codecs
import hashlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator, Optional

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "stylegan_core" / "official" / "official_sources.json"
MARKER = re.compile(rb"^@persistence\.persistent_class\b", re.M)  # a decorated class (not a docstring)
_CODING = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*([-\w.]+)")


def embedded_text(data: bytes) -> str:
    """A file's bytes -> the string ``inspect.getsource`` returns for its module (what persistence embeds)."""
    encoding = "utf-8"
    for line in data.splitlines()[:2]:  # PEP 263: a coding declaration on the first or second line
        m = _CODING.match(line)
        if m:
            encoding = codecs.lookup(m.group(1).decode("ascii")).name
            break
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    text = io.TextIOWrapper(io.BytesIO(data), encoding=encoding, newline=None).read()  # universal newlines
    if text and not text.endswith("\n"):
        text += "\n"  # linecache.updatecache adds the missing final newline
    return text


def embedded_sha256(data: bytes) -> str:
    return hashlib.sha256(embedded_text(data).encode("utf-8", "surrogatepass")).hexdigest()


def _git(git_dir: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout


def _git_dir(path: Path) -> Optional[Path]:
    for cand in (path, path / ".git"):
        if (cand / "HEAD").is_file() and (cand / "objects").is_dir():
            return cand
    return None


def versions_from_git(git_dir: Path) -> Iterator[tuple[str, str, str, bytes]]:
    """``(path, commit, iso date, bytes)`` of every persistent-class module at every commit, oldest first."""
    log = _git(git_dir, "log", "--reverse", "--format=%H %cI", "HEAD").decode().split("\n")
    for line in filter(None, log):
        commit, date = line.split(" ", 1)
        files = _git(git_dir, "ls-tree", "-r", "--name-only", commit).decode().splitlines()
        for path in files:
            if path.endswith(".py"):
                data = _git(git_dir, "show", f"{commit}:{path}")
                if MARKER.search(data):
                    yield path, commit, date, data


def versions_from_tree(root: Path) -> Iterator[tuple[str, Optional[str], Optional[str], bytes]]:
    for p in sorted(root.rglob("*.py")):
        data = p.read_bytes()
        if MARKER.search(data):
            yield p.relative_to(root).as_posix(), None, None, data


def table(repos: dict[str, Path]) -> dict:
    out: dict = {
        "format": 1,
        "about": "sha256 of each released version of the official modules that torch_utils.persistence embeds in "
                 "network pickles (module_src = inspect.getsource(module): UTF-8 text, universal newlines, final "
                 "newline), per repository and file, with the first commit that had it; regenerate with "
                 "scripts/official_sources.py",
        "repositories": {},
    }
    for name, path in repos.items():
        git_dir = _git_dir(path)
        found = versions_from_git(git_dir) if git_dir else versions_from_tree(path)
        files: dict[str, list] = {}
        seen: set[tuple[str, str]] = set()
        for rel, commit, date, data in found:
            digest = embedded_sha256(data)
            if (rel, digest) in seen:
                continue
            seen.add((rel, digest))
            files.setdefault(rel, []).append({"sha256": digest, "commit": commit, "date": date})
        out["repositories"][name] = dict(sorted(files.items()))
    return out


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repos", nargs="+", metavar="NAME=PATH", help="repository name (owner/name) and its git dir or "
                                                                  "checkout")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="exit 1 if the table would change")
    args = ap.parse_args(argv)
    repos = {}
    for item in args.repos:
        name, sep, path = item.partition("=")
        if not sep or not Path(path).exists():
            ap.error(f"{item!r}: expected NAME=PATH with an existing PATH")
        repos[name] = Path(path)
    new = table(repos)
    text = json.dumps(new, indent=1, sort_keys=False) + "\n"
    if args.check:
        old = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        same = old == text
        print(f"{args.out}: {'up to date' if same else 'would change'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    n = sum(len(v) for r in new["repositories"].values() for v in r.values())
    print(f"wrote {args.out}: {n} versions of {sum(len(r) for r in new['repositories'].values())} files in "
          f"{len(repos)} repositories")
    return 0


if __name__ == "__main__":
    sys.exit(main())
