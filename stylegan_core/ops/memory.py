"""The large-block CPU cache: torch's CPU allocator replaced by one that keeps freed blocks of 1 MiB and more
for reuse (``csrc/cpu_cache.cpp`` says why: fresh pages for every large activation cost more than the
memory-bound ops that fill them).

Installed when ``stylegan_core.ops`` is imported, with the limit ``STYLEGAN_CPU_CACHE_MB`` (MiB of freed
blocks kept; default: an eighth of the machine's memory, at most 4096); ``STYLEGAN_CPU_CACHE_MB=0`` leaves
torch's allocator in place. The kept blocks stay in the process (its resident size does not fall back after
a peak) and are released when an allocation would otherwise fail.
"""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

from . import _compiled

ENV = "STYLEGAN_CPU_CACHE_MB"
DEFAULT_MAX_MIB = 4096


def default_limit_mib() -> int:
    """``STYLEGAN_CPU_CACHE_MB`` when set, else an eighth of the physical memory, at most 4096 MiB."""
    raw = os.environ.get(ENV, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{ENV} must be a whole number of MiB (0 turns the cache off), got {raw!r}") from None
        if value < 0:
            raise ValueError(f"{ENV} must be >= 0 MiB (0 turns the cache off), got {raw!r}")
        return value
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0
    return min(DEFAULT_MAX_MIB, total // 8 >> 20)


def set_limit(mib: int) -> int:
    """Keep at most ``mib`` MiB of freed large blocks (0: none, and torch's allocator serves every request);
    returns the previous limit. Without the compiled library, nothing is cached and 0 is returned."""
    if not _compiled.available():
        return 0
    return int(_compiled.ops._cpu_cache_limit(int(mib)))


def stats() -> dict[str, int]:
    """Bytes kept for reuse, bytes of every large block (live or kept), blocks reused, blocks newly allocated."""
    if not _compiled.available():
        return {"cached_bytes": 0, "owned_bytes": 0, "reused": 0, "allocated": 0}
    cached, owned, hits, misses = _compiled.ops._cpu_cache_stats()
    return {"cached_bytes": cached, "owned_bytes": owned, "reused": hits, "allocated": misses}


@contextlib.contextmanager
def limit(mib: int) -> Iterator[None]:
    """Within the block, the cache keeps at most ``mib`` MiB (0: off); the previous limit is restored after."""
    before = set_limit(mib)
    try:
        yield
    finally:
        set_limit(before)


@contextlib.contextmanager
def bypassed() -> Iterator[None]:
    """Within the block, new blocks come from torch's allocator, as without the cache; the blocks already kept
    stay kept for after (how ``bench/peer.py`` runs the official code beside ours without emptying our cache)."""
    if not _compiled.available():
        yield
        return
    before = bool(_compiled.ops._cpu_cache_bypass(True))
    try:
        yield
    finally:
        _compiled.ops._cpu_cache_bypass(before)


def install_default() -> None:
    """Install the cache with :func:`default_limit_mib` (nothing when it is 0 or the library is not built)."""
    mib = default_limit_mib()
    if mib > 0:
        set_limit(mib)
