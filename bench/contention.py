"""Benchmark: the training step rate alone and beside a busy process, as a ratio, per OpenMP wait policy.

    .venv/bin/python bench/contention.py [--seconds 20] [--batch 8] [--busy-threads 2]

The trainer (the embedded default spec, ``load_spec(None)``, with metrics off) runs in a child process for
``--seconds`` after three warm-up steps and reports images/s; each setting runs alone, then beside a busy
child that keeps torch busy with convolutions on ``--busy-threads`` threads (its own defaults: it imports
torch alone). Settings of the trainer:

- ``torch first``: torch imported before stylegan_core, so libgomp starts with its own default wait policy
  (spin, then sleep): how the package ran before it set a policy;
- ``package default``: stylegan_core imported first (as the console entry points do): OMP_WAIT_POLICY=PASSIVE
  unless the environment sets it;
- ``ACTIVE``: OMP_WAIT_POLICY=ACTIVE in the environment (spin while waiting);
- ``threads 1``: the package default with ``train.threads: 1``.

Prints one row per setting: img/s alone, img/s beside the busy process, and their ratio (a fair share of a
2-core machine beside one process using both cores is ~0.5), then the load average before and after, since
other processes on the machine move every figure. Not a test: it only prints.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

TRAINER = r"""
import json, sys, time
first, threads, seconds, batch = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
if first == "torch":
    import torch  # libgomp starts before stylegan_core can choose its wait policy
import tempfile
import stylegan_core
from stylegan_core.build import build_model
from stylegan_core.plugins import load_plugins
from stylegan_core.spec import load_spec
from stylegan_core.training.loop import Trainer

ps = load_plugins()
sets = ["metrics=[]", f"train.batch_size={batch}"] + ([f"train.threads={threads}"] if threads else [])
built = build_model(load_spec(None, sets, ps.registry), ps.registry)
with tempfile.TemporaryDirectory() as d:
    tr = Trainer(built, d, progress=False, log=lambda s: None)
    for _ in range(3):
        tr.step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        tr.step()
        n += batch
    print(json.dumps({"img_s": n / (time.perf_counter() - t0)}), flush=True)
import os
os._exit(0)  # the loader's worker processes are not joined: they hold stdout open
"""

BUSY = r"""
import torch
x, w = torch.randn(8, 64, 64, 64), torch.randn(64, 64, 3, 3)
while True:
    torch.nn.functional.conv2d(x, w, padding=1).sum().item()
"""


def trainer(first: str, env_policy: str | None, threads: int, args: argparse.Namespace) -> float:
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if env_policy:
        env["OMP_WAIT_POLICY"] = env_policy
    out = subprocess.run([sys.executable, "-c", TRAINER, first, str(threads), str(args.seconds), str(args.batch)],
                         env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["img_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0, help="timed training per measurement")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--busy-threads", type=int, default=2, help="torch threads of the busy process")
    args = ap.parse_args()
    settings = [("torch first", "torch", None, 0), ("package default", "package", None, 0),
                ("ACTIVE", "package", "ACTIVE", 0), ("threads 1", "package", None, 1)]
    load0 = os.getloadavg()
    print(f"{os.cpu_count()} CPUs; {args.seconds:g} s per measurement, batch {args.batch}; busy process: torch "
          f"convolutions on {args.busy_threads} threads")
    print(f"{'setting':<16} {'alone img/s':>12} {'busy img/s':>11} {'ratio':>6}")
    for name, first, policy, threads in settings:
        alone = trainer(first, policy, threads, args)
        benv = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
        benv["OMP_NUM_THREADS"] = str(args.busy_threads)
        busy = subprocess.Popen([sys.executable, "-c", BUSY], env=benv)
        try:
            time.sleep(2)  # the busy process is running before the trainer starts
            beside = trainer(first, policy, threads, args)
        finally:
            busy.kill()
            busy.wait()
        print(f"{name:<16} {alone:>12.1f} {beside:>11.1f} {beside / alone:>6.2f}", flush=True)
    print(f"load average (1 min) before {load0[0]:.1f}, after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
