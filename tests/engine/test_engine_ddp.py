"""Data-parallel training with two gloo processes on 127.0.0.1: identical weights, shared decisions.

The workers are spawned (a fresh interpreter each), which imports this module by its name
``tests.engine.test_engine_ddp``: the ``repo_on_path`` fixture puts the repository on ``sys.path``,
which the children inherit, so the suite runs the same under ``pytest`` and ``python -m pytest``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import Tensor, nn

from stnkit.engine import CHECKPOINT_NAME, DivergenceError, TrainConfig, fit, load_checkpoint
from stnkit.engine.distributed import cleanup_distributed, init_distributed
from stnkit.models import create_model

MODEL_KWARGS = {"image_size": [8, 8], "num_classes": 3, "hidden": [16], "loc_hidden": [8]}
REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def repo_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))


class ShardLoader:
    """Tiny separable data, each rank taking every other batch of a per-epoch permutation.

    ``poison=(epoch, step, kind)`` spoils one batch of this rank: ``"nan"`` puts a NaN pixel in
    the first image, ``"inf-loss"`` marks the first image of class 0 for :class:`InfLossModel`.
    """

    def __init__(self, rank: int, world: int, poison: tuple[int, int, str] | None = None) -> None:
        g = torch.Generator().manual_seed(0)
        self.labels = torch.arange(48) % 3
        self.images = torch.rand(48, 1, 8, 8, generator=g)
        for c in range(3):
            self.images[self.labels == c, 0, 2 * c + 1] += 1.0
        self.rank, self.world, self.epoch = rank, world, 1
        self.poison = poison

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 48 // 8 // self.world

    def __iter__(self):
        order = torch.randperm(48, generator=torch.Generator().manual_seed(self.epoch))
        for step in range(len(self)):
            b = step * self.world + self.rank
            idx = order[b * 8 : (b + 1) * 8]
            images, labels = self.images[idx].clone(), self.labels[idx]
            if self.poison is not None and self.poison[:2] == (self.epoch, step):
                first_of_class_0 = int((labels == 0).nonzero()[0])
                if self.poison[2] == "nan":
                    images[0, 0, 0, 0] = float("nan")
                else:
                    images[first_of_class_0, 0, 0, 0] = -1.0  # the pixels are otherwise >= 0
            yield images, labels


class InfLossModel(nn.Module):
    """A linear classifier whose loss is +inf on a marked image while its gradients stay finite.

    An image whose top-left pixel is negative gets logit -inf for class 0 (its label), so the
    cross-entropy is +inf; the gradient of cross-entropy w.r.t. the logits is softmax - one-hot,
    finite, so DDP's averaged gradients and their norm stay finite on every rank: only the rank
    holding the image sees the divergence in its own loss.
    """

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 3)

    def forward(self, images: Tensor) -> Tensor:
        marked = images[:, 0, 0, 0] < 0  # (B,)
        logits = self.linear(images.clamp(min=0).flatten(1))  # (B, 3)
        offset = torch.zeros_like(logits)
        offset[marked, 0] = float("-inf")
        return logits + offset


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


def _spawn(worker, args: tuple, *, timeout_s: float) -> None:
    """Run ``worker(rank, *args)`` on 2 ranks (retrying a taken port); fail if one hangs."""
    for attempt in range(3):  # the free port can be taken between probing and binding
        context = mp.start_processes(worker, args=(2, _free_port(), *args), nprocs=2, join=False)
        deadline = time.monotonic() + timeout_s
        try:
            while not context.join(timeout=max(0.1, deadline - time.monotonic())):
                if time.monotonic() > deadline:
                    pytest.fail(f"DDP workers still running after {timeout_s:.0f} s (a rank hangs)")
            return
        except mp.ProcessRaisedException as err:
            if attempt == 2 or not any(w in str(err) for w in ("DistNetworkError", "ddress")):
                raise
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.kill()


@pytest.mark.usefixtures("repo_on_path")
def test_two_gloo_ranks_end_identical(tmp_path: Path) -> None:
    _spawn(_worker, (str(tmp_path),), timeout_s=120)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    start = create_model("st-fcn-affine", **MODEL_KWARGS).state_dict()
    assert any(not torch.equal(a[k], start[k]) for k in a)  # training moved the weights
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 2  # written by rank 0 only


DIVERGENCE_KINDS = ("nan", "inf-loss")


def _diverging_worker(rank: int, world: int, port: int, out: str) -> None:
    """For each kind of spoilt batch, train 2 epochs with one batch of rank 1 spoilt in epoch 2.

    What each rank raised is written to ``out/<kind>/rank<r>.outcome``. Both kinds run in one
    process group, so the test pays the start-up of two interpreters once.
    """
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    ctx = init_distributed()
    try:
        for kind in DIVERGENCE_KINDS:
            run = Path(out) / kind
            (run / f"rank{rank}.outcome").write_text(_diverging_fit(rank, world, ctx, run, kind))
    finally:
        cleanup_distributed()


def _diverging_fit(rank: int, world: int, ctx, run: Path, kind: str) -> str:
    torch.manual_seed(0)
    model = InfLossModel() if kind == "inf-loss" else create_model("st-fcn-affine", **MODEL_KWARGS)
    config = TrainConfig(
        dataset="tiny", model="st-fcn-affine", epochs=2, batch_size=16, out=str(run), progress=False
    )
    poison = (2, 1, kind) if rank == 1 else None
    try:
        fit(
            model,
            ShardLoader(rank, world, poison),
            None,
            config,
            model_name="st-fcn-affine",
            model_kwargs=MODEL_KWARGS,
            out_dir=run,
            ctx=ctx,
        )
    except DivergenceError as err:
        return f"DivergenceError: {err}"
    except Exception as err:  # e.g. gloo's "connection closed by peer" once a rank has left
        return f"{type(err).__name__}: {err}"
    return "finished"


@pytest.mark.usefixtures("repo_on_path")
def test_divergence_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    # "nan": the warp refuses rank 1's NaN parameters (NonFiniteError) in its forward pass;
    # "inf-loss": only rank 1's loss is non-finite, the averaged gradients stay finite.
    for kind in DIVERGENCE_KINDS:
        (tmp_path / kind).mkdir()
    _spawn(_diverging_worker, (str(tmp_path),), timeout_s=120)
    for kind in DIVERGENCE_KINDS:
        outcomes = [(tmp_path / kind / f"rank{r}.outcome").read_text() for r in range(2)]
        for outcome in outcomes:
            assert outcome.startswith("DivergenceError:"), (kind, outcomes)
            assert "epoch 2, step 2" in outcome, (kind, outcomes)
        assert "1 of 2 ranks" in outcomes[0] and "rank 0 was finite" in outcomes[0], outcomes
        assert "on rank 1: " in outcomes[1], outcomes
        assert load_checkpoint(tmp_path / kind / CHECKPOINT_NAME)["epoch"] == 1  # last good one


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
