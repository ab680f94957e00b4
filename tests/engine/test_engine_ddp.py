"""Data-parallel training with two gloo processes on 127.0.0.1 ends with identical weights."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from stnkit.engine import CHECKPOINT_NAME, TrainConfig, fit, load_checkpoint
from stnkit.engine.distributed import cleanup_distributed, init_distributed
from stnkit.models import create_model

MODEL_KWARGS = {"image_size": [8, 8], "num_classes": 3, "hidden": [16], "loc_hidden": [8]}
REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ShardLoader:
    """Tiny separable data, each rank taking every other batch of a per-epoch permutation."""

    def __init__(self, rank: int, world: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.labels = torch.arange(48) % 3
        self.images = torch.rand(48, 1, 8, 8, generator=g)
        for c in range(3):
            self.images[self.labels == c, 0, 2 * c + 1] += 1.0
        self.rank, self.world, self.epoch = rank, world, 1

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 48 // 8 // self.world

    def __iter__(self):
        order = torch.randperm(48, generator=torch.Generator().manual_seed(self.epoch))
        for step in range(len(self)):
            b = step * self.world + self.rank
            idx = order[b * 8 : (b + 1) * 8]
            yield self.images[idx], self.labels[idx]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    ctx = init_distributed()
    try:
        torch.manual_seed(0)
        model = create_model("st-fcn-affine", **MODEL_KWARGS)
        config = TrainConfig(
            dataset="tiny", model="st-fcn-affine", epochs=2, batch_size=16, out=out, progress=False
        )
        fit(
            model,
            ShardLoader(rank, world),
            None,
            config,
            model_name="st-fcn-affine",
            model_kwargs=MODEL_KWARGS,
            out_dir=out,
            ctx=ctx,
        )
        torch.save(model.state_dict(), Path(out) / f"rank{rank}.pt")
    finally:
        cleanup_distributed()


def test_two_gloo_ranks_end_identical(tmp_path: Path) -> None:
    for attempt in range(3):  # the free port can be taken between probing and binding
        try:
            mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
            break
        except mp.ProcessRaisedException as err:
            if attempt == 2 or not any(w in str(err) for w in ("DistNetworkError", "ddress")):
                raise
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    start = create_model("st-fcn-affine", **MODEL_KWARGS).state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a)  # training moved the weights
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 2  # written by rank 0 only


def test_cli_train_under_torchrun(tmp_path: Path) -> None:
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real MNIST not found at {SHARED_DATA}")
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "stnkit.cli", "train", "--dataset", "mnist", "--model", "st-fcn-affine",
        "--epochs", "1", "--limit", "128", "--test-limit", "64", "--batch-size", "32",
        "--threads", "1", "--no-progress", "--snapshot-images", "4",
        "--data-root", str(SHARED_DATA), "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "processes: 2" in done.stdout  # one config print, from rank 0
    assert load_checkpoint(out / CHECKPOINT_NAME)["epoch"] == 1
    assert (out / "report.md").is_file()
