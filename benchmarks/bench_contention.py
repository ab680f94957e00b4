"""Training speed when another process shares the cores: thread count and OpenMP wait policy.

    python benchmarks/bench_contention.py                      # ST-CNN on RTS, 2 threads vs 1, wait policies
    python benchmarks/bench_contention.py --out results/benchmarks/contention-intel-xeon.txt

On a 2-core machine a 2-thread training slows far more than twofold when one other busy process
runs beside it: OpenMP's worker threads wait for each other at the end of every parallel region,
and one of them is often descheduled. This measures, for each setting, the median step time of
``bench_train.py`` (forward + backward + Adam on one fixed batch) alone and beside a competitor:

* ``spin``: one single-threaded busy loop (a shell, an editor, a linter on one core);
* ``torch``: another 2-thread torch job (matrix products; a test suite, a second training).

Settings: ``--threads 2`` with OpenMP's default wait policy, with ``OMP_WAIT_POLICY=PASSIVE``
(waiting threads sleep instead of spinning), with GNU libgomp's ``GOMP_SPINCOUNT`` cut from its
default (spin less long before sleeping), and ``--threads 1``. Each measurement runs in a fresh
process because OpenMP reads its environment once, at start-up. Wall-clock numbers: name the CPU.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from stnkit.machine import cpu_model

HERE = Path(__file__).resolve().parent

# Competitors, each a command line run beside the measured training until it is killed.
COMPETITORS: dict[str, list[str] | None] = {
    "alone": None,
    "spin": [sys.executable, "-c", "while True: pass"],
    "torch": [
        sys.executable,
        "-c",
        "import torch\ntorch.set_num_threads(2)\na = torch.randn(512, 512)\nwhile True: a @ a",
    ],
}

# Settings: (label, threads, extra environment).
SETTINGS: list[tuple[str, int, dict[str, str]]] = [
    ("2 threads, default wait", 2, {}),
    ("2 threads, OMP_WAIT_POLICY=PASSIVE", 2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("2 threads, GOMP_SPINCOUNT=10000", 2, {"GOMP_SPINCOUNT": "10000"}),
    ("2 threads, GOMP_SPINCOUNT=100000", 2, {"GOMP_SPINCOUNT": "100000"}),
    ("1 thread", 1, {}),
]

STEP_LINE = re.compile(r"step\s+([0-9.]+) ms")


def step_ms(
    model: str, dataset: str, batch_size: int, steps: int, threads: int, env: dict[str, str]
) -> float:
    """Median step time (ms) of one ``bench_train.py`` run in a fresh process."""
    command = [
        sys.executable,
        str(HERE / "bench_train.py"),
        "--model", model,
        "--dataset", dataset,
        "--batch-size", str(batch_size),
        "--steps", str(steps),
        "--batches", "0",
        "--threads", str(threads),
    ]  # fmt: skip
    done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True)
    if done.returncode != 0:  # one line with bench_train's own last line, not a traceback
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"bench_contention: bench_train exited with {done.returncode}: {last}")
    match = STEP_LINE.search(done.stdout)
    if match is None:
        raise SystemExit(f"bench_contention: no step time in bench_train's output: {done.stdout[-300:]!r}")
    return float(match.group(1))


def measure(
    competitor: list[str] | None,
    model: str,
    dataset: str,
    batch_size: int,
    steps: int,
    threads: int,
    env: dict[str, str],
) -> float:
    """One setting's step time with ``competitor`` running beside it (None: alone)."""
    rival = None if competitor is None else subprocess.Popen(competitor, stdout=subprocess.DEVNULL)
    try:
        if rival is not None:
            time.sleep(1.0)  # let the competitor start (torch's import takes a moment)
        return step_ms(model, dataset, batch_size, steps, threads, env)
    finally:
        if rival is not None:
            rival.kill()
            rival.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="st-cnn-affine")
    parser.add_argument("--dataset", default="rts")
    parser.add_argument("--batch-size", type=int, default=128, help="the recipe's batch size")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--out", type=Path, default=None, help="also write the table to this text file")
    args = parser.parse_args()

    lines = [
        f"{cpu_model()}, {os.cpu_count()} logical CPUs, {args.model} on {args.dataset}, "
        f"batch {args.batch_size}, median of {args.steps} steps, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"{'setting':36s}" + "".join(f"{name:>14s}" for name in COMPETITORS) + "   (ms per step)",
    ]
    print("\n".join(lines), flush=True)
    for label, threads, env in SETTINGS:
        cells = [
            measure(competitor, args.model, args.dataset, args.batch_size, args.steps, threads, env)
            for competitor in COMPETITORS.values()
        ]
        row = f"{label:36s}" + "".join(f"{ms:14.1f}" for ms in cells)
        print(row, flush=True)
        lines.append(row)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
