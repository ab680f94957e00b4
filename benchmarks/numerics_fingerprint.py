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

Each file also holds a digest per primitive (``ops``: convolution, its two gradients, a matrix
product, pooling, stnkit's fused affine warp and ``F.grid_sample`` with their gradients, the
cross-entropy, an Adam step, reductions and transcendental functions, on fixed inputs of the
fingerprint run's sizes, 2 threads), so that where two CPUs' runs differ ``--compare`` names the
kernels that round differently: the ones to pin before the same command can give the same
numbers on both.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from stnkit.engine import CHECKPOINT_NAME, METRICS_NAME, load_checkpoint, read_jsonl
from stnkit.machine import cpu_model
from stnkit.numerics import NUMERICS, use_numerics

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
        digest.update(
            tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
        )  # 0-dim too
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


def _digest(*tensors: torch.Tensor) -> str:
    """The first 16 hex digits of :func:`weights_digest` over ``tensors`` (named by position)."""
    return weights_digest({str(i): tensor for i, tensor in enumerate(tensors)})[:16]


def op_digests() -> dict[str, str]:
    """A digest of each primitive's output (and gradients) on fixed random inputs, 2 threads.

    Run it in a fresh process whose numerics were chosen first (``--ops-json``).
    """
    import torch.nn.functional as F

    from stnkit import warp

    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).requires_grad_()

    digests: dict[str, str] = {}
    # The ST-CNN's first convolution on a batch of 42x42 images (batch 64, 1 -> 32 filters, 5x5).
    images, weight = rand(64, 1, 42, 42), rand(32, 1, 5, 5)
    out = F.conv2d(images, weight, padding=2)
    digests["conv2d"] = _digest(out)
    out.square().sum().backward()
    digests["conv2d.grad_input"], digests["conv2d.grad_weight"] = _digest(images.grad), _digest(weight.grad)
    # A deeper convolution (32 -> 64 filters on 21x21), where the reduction runs over channels too.
    features, weight = rand(64, 32, 21, 21), rand(64, 32, 5, 5)
    out = F.conv2d(features, weight, padding=2)
    digests["conv2d.32to64"] = _digest(out)
    out.square().sum().backward()
    digests["conv2d.32to64.grads"] = _digest(features.grad, weight.grad)
    # The same two convolutions through ATen's own path (im2col and a matrix product), not oneDNN's:
    # which of the two rounds alike on two CPU models says whether turning oneDNN off would pin them.
    with torch.backends.mkldnn.flags(enabled=False), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's note on TF32 for Intel GPUs, whenever the flag is set
        for name, (inputs, filters) in {
            "conv2d.aten": ((64, 1, 42, 42), (32, 1, 5, 5)),
            "conv2d.32to64.aten": ((64, 32, 21, 21), (64, 32, 5, 5)),
        }.items():
            inputs_, filters_ = rand(*inputs), rand(*filters)
            out = F.conv2d(inputs_, filters_, padding=2)
            out.square().sum().backward()
            digests[name] = _digest(out, inputs_.grad, filters_.grad)
    pooled_in = rand(64, 32, 42, 42)
    pooled = F.max_pool2d(pooled_in, 2)
    pooled.sum().backward()
    digests["max_pool2d"] = _digest(pooled, pooled_in.grad)
    # A fully connected layer (matrix products: MKL's or oneDNN's).
    x, w = rand(256, 2048), rand(256, 2048)
    out = F.linear(x, w)
    digests["linear"] = _digest(out)
    out.square().sum().backward()
    digests["linear.grads"] = _digest(x.grad, w.grad)
    # The spatial transformer's sampling: stnkit's fused kernel and torch's own.
    theta = (torch.eye(2, 3).expand(64, 2, 3) + 0.1 * torch.randn(64, 2, 3, generator=g)).requires_grad_()
    images = rand(64, 1, 42, 42)
    out = warp(images, theta, out_size=(28, 28))
    out.square().sum().backward()
    digests["stnkit.warp"] = _digest(out, images.grad, theta.grad)
    images.grad, theta.grad = None, None
    grid = F.affine_grid(theta, [64, 1, 28, 28], align_corners=False)
    out = F.grid_sample(images, grid, align_corners=False)
    out.square().sum().backward()
    digests["grid_sample"] = _digest(out, images.grad, theta.grad)
    logits, labels = rand(256, 10), torch.randint(0, 10, (256,), generator=g)
    loss = F.cross_entropy(logits, labels)
    loss.backward()
    digests["cross_entropy"] = _digest(loss, logits.grad)
    big = torch.randn(1 << 20, generator=g)
    digests["sum"] = _digest(big.sum(), big.square().mean())
    digests["exp.tanh.log"] = _digest(big.exp(), big.tanh(), big.abs().add(1).log())
    parameter = torch.nn.Parameter(torch.randn(4096, generator=g))
    optimizer = torch.optim.Adam([parameter], lr=1e-3)
    for _ in range(3):
        parameter.grad = torch.randn(4096, generator=g)
        optimizer.step()
    digests["adam"] = _digest(parameter.detach())
    return digests


def _ops_in_fresh_process(numerics: str) -> dict[str, str]:
    """:func:`op_digests` under ``numerics`` in a fresh process (numerics are fixed at the first computation)."""
    done = subprocess.run(
        [sys.executable, __file__, "--ops-json", numerics], check=True, capture_output=True, text=True
    )
    return dict(json.loads(done.stdout))


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
        "ops": _ops_in_fresh_process(numerics),
        "recorded_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def file_name(fingerprint: dict[str, Any]) -> str:
    cpu = re.sub(r"[^a-z0-9]+", "-", re.sub(r"\((r|tm)\)", "", fingerprint["cpu"].lower())).strip("-")
    return f"{cpu}-{fingerprint['cpu_capability'].lower()}-{fingerprint['numerics']}.json"


def first_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    """'same' (identical weights), or the first epoch whose losses differ (numerics may differ),
    with the kernels whose digests differ where both records have them."""
    if a["command"] != b["command"] or a["torch"] != b["torch"]:
        return "not comparable (another command or torch)"
    if a["weights_sha256"] == b["weights_sha256"]:
        return "same"
    for epoch, (x, y) in enumerate(zip(a["epochs"], b["epochs"], strict=True), start=1):
        if x != y:
            loss_a, loss_b = (float.fromhex(e["train_loss_hex"]) for e in (x, y))
            return f"differ from epoch {epoch} (training loss {loss_a:.9g} vs {loss_b:.9g}){_ops_differing(a, b)}"
    return f"same losses, different final weights{_ops_differing(a, b)}"


def _ops_differing(a: dict[str, Any], b: dict[str, Any]) -> str:
    """'; kernels that differ: ...' over the kernels both records digested (empty where one has none),
    and those only one of them has (recorded by another version of this script)."""
    if "ops" not in a or "ops" not in b:
        return ""
    shared = [name for name in a["ops"] if name in b["ops"]]
    differing = [name for name in shared if a["ops"][name] != b["ops"][name]]
    said = f"; kernels that differ: {', '.join(differing) or 'none'}"
    only_one = sorted(a["ops"].keys() ^ b["ops"].keys())
    return said + (f" (recorded on one side only: {', '.join(only_one)})" if only_one else "")


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
    parser.add_argument("--ops-json", choices=NUMERICS, help=argparse.SUPPRESS)  # one process's op digests
    args = parser.parse_args()
    if args.ops_json:
        use_numerics(args.ops_json)
        print(json.dumps(op_digests()))
        return
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
