"""OpenMP wait policy: importing stylegan_core before torch makes waiting OpenMP threads sleep (PASSIVE) unless the
environment chose a policy; a program that imported torch first keeps libgomp's own setting
(bench/contention.py measures why)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = "import os, sys\n{first}import stylegan_core\nprint(os.environ.get('OMP_WAIT_POLICY'))"


@pytest.mark.parametrize("first,env,want", [("", None, "PASSIVE"), ("", "ACTIVE", "ACTIVE"),
                                            ("import torch\n", None, "None")])
def test_wait_policy_is_passive_unless_chosen(first, env, want):
    e = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env:
        e["OMP_WAIT_POLICY"] = env
    out = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], env=e, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == want
