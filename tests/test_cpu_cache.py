"""The large-block CPU cache (stylegan_core.ops.memory, csrc/cpu_cache.cpp): freed blocks of 1 MiB and more are
reused, within the limit; STYLEGAN_CPU_CACHE_MB=0 leaves torch's allocator alone; kept blocks are given back
when an allocation would otherwise fail; a bad setting is refused naming the variable. Each case runs in a
child process: the allocator is process-wide."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from stylegan_core.ops import _compiled

pytestmark = pytest.mark.skipif(not _compiled.available(), reason="the compiled library is not built")


def child(code: str, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k != "STYLEGAN_CPU_CACHE_MB"}
    e.update(env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=e, capture_output=True, text=True,
                          timeout=120)


def test_freed_large_blocks_are_reused_within_the_limit():
    r = child("""
        import torch
        from stylegan_core.ops import memory
        x = torch.randn(2, 64, 128, 128)          # 8 MiB
        y = x + 1; p = y.data_ptr(); del y
        z = x * 2                                  # the same size class: the freed block comes back
        assert z.data_ptr() == p, "not reused"
        assert torch.equal(z, x.mul(2))
        s = memory.stats(); assert s["reused"] >= 1 and s["owned_bytes"] >= 2 * (8 << 20), s
        small = torch.randn(100, 100); assert memory.stats()["allocated"] == s["allocated"]  # < 1 MiB: torch's
        del z                                      # kept
        with memory.bypassed():                    # new blocks from torch's allocator, kept ones stay kept
            s = memory.stats(); t = x * 3
            assert memory.stats() == s, (memory.stats(), s)
            del t
        z = x * 2; assert memory.stats()["reused"] == s["reused"] + 1 and memory.stats()["allocated"] == s["allocated"]
        memory.set_limit(10)                       # keep at most 10 MiB
        blocks = [torch.empty(8 << 20, dtype=torch.uint8) for _ in range(4)]
        del blocks
        assert memory.stats()["cached_bytes"] <= 10 << 20, memory.stats()
        with memory.limit(0):
            assert memory.stats()["cached_bytes"] == 0
            before = memory.stats()["allocated"]; t = torch.empty(8 << 20, dtype=torch.uint8)
            assert memory.stats()["allocated"] == before       # off: torch's allocator serves it
        assert memory.set_limit(0) == 10
        print("ok")
    """, STYLEGAN_CPU_CACHE_MB="64")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_zero_leaves_torchs_allocator_alone():
    r = child("""
        import torch
        from stylegan_core.ops import memory
        x = torch.randn(2, 64, 128, 128); y = x + 1; del y; z = x * 2
        assert memory.stats() == {"cached_bytes": 0, "owned_bytes": 0, "reused": 0, "allocated": 0}, memory.stats()
        print("ok")
    """, STYLEGAN_CPU_CACHE_MB="0")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_kept_blocks_are_released_when_memory_runs_out():
    """Under an address-space limit, 600 MiB of kept 100 MiB blocks make way for one 400 MiB tensor."""
    r = child("""
        import resource, torch
        from stylegan_core.ops import memory
        with open("/proc/self/status") as f:
            vm = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:"))
        resource.setrlimit(resource.RLIMIT_AS, (vm + (800 << 20), vm + (800 << 20)))
        blocks = [torch.empty(100 << 20, dtype=torch.uint8) for _ in range(6)]
        del blocks
        assert memory.stats()["cached_bytes"] == 600 << 20, memory.stats()
        big = torch.ones(400 << 20, dtype=torch.uint8)
        assert int(big[-1]) == 1 and memory.stats()["cached_bytes"] == 0, memory.stats()
        print("ok")
    """, STYLEGAN_CPU_CACHE_MB="1024")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_a_bad_setting_is_refused_naming_the_variable(monkeypatch):
    from stylegan_core.ops import memory

    for bad in ("lots", "-1", "1.5"):
        monkeypatch.setenv("STYLEGAN_CPU_CACHE_MB", bad)
        with pytest.raises(ValueError, match="STYLEGAN_CPU_CACHE_MB must be"):
            memory.default_limit_mib()
    monkeypatch.setenv("STYLEGAN_CPU_CACHE_MB", "12")
    assert memory.default_limit_mib() == 12
    monkeypatch.delenv("STYLEGAN_CPU_CACHE_MB")
    assert 0 < memory.default_limit_mib() <= memory.DEFAULT_MAX_MIB
