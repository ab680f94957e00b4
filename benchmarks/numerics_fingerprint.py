"""Does the same training command give the same numbers on this CPU as on another? A fingerprint per CPU.

    python benchmarks/numerics_fingerprint.py             # record this CPU's (native and portable)
    python benchmarks/numerics_fingerprint.py --compare   # which recorded CPUs agree, bit for bit

Recording trains one short, fixed run (``FINGERPRINT_COMMAND``: the ST-CNN on RTS, 4,096 training
images, 3 epochs, seed 0, 2 threads) once per numerics (:mod:`stnkit.numerics`), each in a fresh
process, and writes ``results/numerics/<cpu>-<capability>-<numerics>.json``: the CPU, torch's CPU
capability, every epoch's training loss as an exact float (hex) and its test error, and a SHA-256 of
the final weights. Commit the files; a session on another CPU records its own and ``--compare``
says which agree exactly and, where they do not, the first epoch that differs. About a minute per
numerics on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from stnkit.engine import CHECKPOINT_NAME, METRICS_NAME, load_checkpoint, read_jsonl
from stnkit.machine import cpu_model
from stnkit.numerics import NUMERICS

FOLDER = Path(__file__).resolve().parents[1] / "results" / "numerics"
FINGERPRINT_COMMAND = (
    "--dataset", "rts", "--model", "st-cnn-affine", "--seed", "0", "--threads", "2",
    "--epochs", "3", "--limit", "4096", "--test-limit", "1000", "--no-progress",
)  # fmt: skip


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def _capability_in_fresh_process(numerics: str) -> str:
    """torch's CPU capability in a fresh process under ``numerics`` (what the training run used)."""
    code = (
        "import torch; from stnkit.numerics import use_numerics; "
        f"use_numerics({numerics!r}); print(torch.backends.cpu.get_cpu_capability())"
    )
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def record(numerics: str, data_root: str | None) -> dict[str, Any]:
    """Train the fingerprint run under ``numerics`` in a fresh process and describe its numbers."""
    command = [*FINGERPRINT_COMMAND, "--numerics", numerics]
    if data_root:
        command += ["--data-root", data_root]
    with tempfile.TemporaryDirectory() as folder:
        run = [sys.executable, "-m", "stnkit", "train", *command, "--out", folder]
        subprocess.run(run, check=True, stdout=subprocess.DEVNULL)
        epochs = read_jsonl(Path(folder) / METRICS_NAME)
        state = load_checkpoint(Path(folder) / CHECKPOINT_NAME)
    return {
        "cpu": cpu_model(),
        "cpu_capability": _capability_in_fresh_process(numerics),
        "numerics": numerics,
        "torch": torch.__version__,
        "command": "stnkit train " + " ".join(FINGERPRINT_COMMAND),  # plus --numerics NUMERICS
        "epochs": [
            {
                "train_loss_hex": float(e["train_loss"]).hex(),
                "test_loss_hex": float(e["test_loss"]).hex(),
                "train_error": e["train_error"],
                "test_error": e["test_error"],
            }
            for e in epochs
        ],
        "weights_sha256": weights_digest(state["model"]),
        "recorded_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def file_name(fingerprint: dict[str, Any]) -> str:
    cpu = re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)", "", fingerprint["cpu"].lower())).strip("-")
    return f"{cpu}-{fingerprint['cpu_capability'].lower()}-{fingerprint['numerics']}.json"


def first_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    """'same' (identical weights), or the first epoch whose losses differ (numerics may differ)."""
    if a["command"] != b["command"] or a["torch"] != b["torch"]:
        return "not comparable (another command or torch)"
    if a["weights_sha256"] == b["weights_sha256"]:
        return "same"
    for epoch, (x, y) in enumerate(zip(a["epochs"], b["epochs"], strict=True), start=1):
        if x != y:
            loss_a, loss_b = (float.fromhex(e["train_loss_hex"]) for e in (x, y))
            return f"differ from epoch {epoch} (training loss {loss_a:.9g} vs {loss_b:.9g})"
    return "same losses, different final weights"


def compare(folder: Path) -> list[str]:
    """A line per pair of recorded fingerprints."""
    records = [json.loads(path.read_text()) | {"file": path.name} for path in sorted(folder.glob("*.json"))]
    prints = [record for record in records if "weights_sha256" in record]  # other files: not fingerprints
    lines = []
    for i, a in enumerate(prints):
        for b in prints[i + 1 :]:
            lines.append(f"{a['file']} vs {b['file']}: {first_difference(a, b)}")
    return lines or [f"fewer than two fingerprints in {folder}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--numerics", nargs="+", choices=NUMERICS, default=list(NUMERICS))
    parser.add_argument(
        "--compare", action="store_true", help="compare the recorded fingerprints, record nothing"
    )
    parser.add_argument(
        "--out", type=Path, default=FOLDER, help=f"folder of the fingerprints (default {FOLDER})"
    )
    parser.add_argument("--data-root", help="data folder (default: stnkit's)")
    args = parser.parse_args()
    if not args.compare:
        args.out.mkdir(parents=True, exist_ok=True)
        for numerics in args.numerics:
            fingerprint = record(numerics, args.data_root)
            path = args.out / file_name(fingerprint)
            path.write_text(json.dumps(fingerprint, indent=1) + "\n")
            print(f"wrote {path}: weights {fingerprint['weights_sha256'][:16]}")
    print("\n".join(compare(args.out)))


if __name__ == "__main__":
    main()
