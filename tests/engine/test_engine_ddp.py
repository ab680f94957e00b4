"""Data-parallel training with two gloo processes on 127.0.0.1: identical weights, shared decisions.

The workers are spawned (a fresh interpreter each), which imports this module by its name
``tests.engine.test_engine_ddp``: the ``repo_on_path`` fixture puts the repository on ``sys.path``,
which the children inherit, so the suite runs the same under ``pytest`` and ``python -m pytest``.
"""

from __future__ import annotations

import faulthandler
import gc
import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import Tensor, nn

from stnkit.engine import CHECKPOINT_NAME, DivergenceError, TrainConfig, evaluate, fit, load_checkpoint
from stnkit.engine.distributed import DistContext, cleanup_distributed, init_distributed
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
    ``stop_at=(epoch, step)`` raises KeyboardInterrupt there (a killed run).
    """

    def __init__(
        self,
        rank: int,
        world: int,
        poison: tuple[int, int, str] | None = None,
        stop_at: tuple[int, int] | None = None,
    ) -> None:
        g = torch.Generator().manual_seed(0)
        self.labels = torch.arange(48) % 3
        self.images = torch.rand(48, 1, 8, 8, generator=g)
        for c in range(3):
            self.images[self.labels == c, 0, 2 * c + 1] += 1.0
        self.rank, self.world, self.epoch = rank, world, 1
        self.poison, self.stop_at = poison, stop_at

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 48 // 8 // self.world

    def __iter__(self):
        order = torch.randperm(48, generator=torch.Generator().manual_seed(self.epoch))
        for step in range(len(self)):
            if self.stop_at == (self.epoch, step):
                raise KeyboardInterrupt("killed")
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
    gc.disable()  # DDP wrappers live in reference cycles: only cleanup_distributed may collect them
    ctx = _join_group(rank, world, port)
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
        _leave_group(rank, out)
        left = sum(isinstance(o, nn.parallel.DistributedDataParallel) for o in gc.get_objects())
        (Path(out) / f"rank{rank}.ddp-left").write_text(str(left))


def _join_group(rank: int, world: int, port: int) -> DistContext:
    """Join a ``world``-process gloo group on 127.0.0.1 as torchrun would, one thread per rank.

    faulthandler prints every thread's Python stack if the worker dies of a signal (a C++ abort
    in gloo once did, on CI only), so the log says where.
    """
    faulthandler.enable(all_threads=True)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    return init_distributed()


def _leave_group(rank: int, out: str) -> None:
    """cleanup_distributed, with the phase reached written to ``out/rank<r>.phase`` for _spawn's report."""
    phase = Path(out) / f"rank{rank}.phase"
    phase.write_text("leaving the group")
    cleanup_distributed()
    phase.write_text("left the group")


def _phases(out: str) -> str:
    """Where each rank had got to, from ``out/rank<r>.phase`` (absent: still in its work)."""
    said = []
    for rank in range(2):
        phase = Path(out) / f"rank{rank}.phase"
        said.append(f"rank {rank}: {phase.read_text() if phase.exists() else 'in its work'}")
    return "; ".join(said)


def _spawn(worker, args: tuple, *, timeout_s: float) -> None:
    """Run ``worker(rank, *args)`` on 2 ranks; fail if one hangs, raises, or dies twice.

    Two failures outside our code are retried: a free port taken between probing and binding
    (up to 3 attempts), and one abort (SIGABRT). Once on CI (never in 68 runs here) both ranks of
    the divergence test aborted in C++ with "terminate called without an active exception", a race
    inside gloo (later seen in fresh-clone runs here too, in the weight-average test); the first
    abort is a warning that says where each rank had got to (``_leave_group``'s phase files), a
    second fails the test, and any other signal (a segmentation fault, a kill for memory) fails it
    at once.
    """
    aborts = 0
    for attempt in range(3):
        for rank in range(2):  # a rank's phase is this attempt's, never an earlier one's
            (Path(args[0]) / f"rank{rank}.phase").unlink(missing_ok=True)
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
        except mp.ProcessExitedException as err:
            aborts += 1
            if attempt == 2 or err.signal_name != "SIGABRT" or aborts > 1:
                raise
            warnings.warn(
                f"DDP worker died ({err}; {_phases(args[0])}); running the workers once more", stacklevel=2
            )
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.kill()


def _aborting_worker(rank: int, world: int, port: int, out: str, deaths: int) -> None:
    """Rank 1 aborts (SIGABRT) in its first ``deaths`` runs, counted in ``out/runs``; no group."""
    if rank == 1:
        runs = Path(out) / "runs"
        done = len(runs.read_text()) if runs.exists() else 0
        runs.write_text("x" * (done + 1))
        if done < deaths:
            os.abort()


@pytest.mark.usefixtures("repo_on_path")
def test_spawn_runs_again_after_one_abort_not_two(tmp_path: Path) -> None:
    for name in ("once", "twice"):
        (tmp_path / name).mkdir()
    with pytest.warns(UserWarning, match="SIGABRT"):
        _spawn(_aborting_worker, (str(tmp_path / "once"), 1), timeout_s=60)
    assert (tmp_path / "once" / "runs").read_text() == "xx"
    with pytest.raises(mp.ProcessExitedException, match="SIGABRT"), pytest.warns(UserWarning):
        _spawn(_aborting_worker, (str(tmp_path / "twice"), 2), timeout_s=60)
    assert (tmp_path / "twice" / "runs").read_text() == "xx"


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
    # No DDP wrapper (whose reducer holds the gloo group) outlives leaving the group.
    assert [(tmp_path / f"rank{r}.ddp-left").read_text() for r in range(2)] == ["0", "0"]


DIVERGENCE_KINDS = ("nan", "inf-loss")


def _diverging_worker(rank: int, world: int, port: int, out: str) -> None:
    """For each kind of spoilt batch, train 2 epochs with one batch of rank 1 spoilt in epoch 2.

    What each rank raised is written to ``out/<kind>/rank<r>.outcome``. Both kinds run in one
    process group, so the test pays the start-up of two interpreters once.
    """
    ctx = _join_group(rank, world, port)
    try:
        for kind in DIVERGENCE_KINDS:
            run = Path(out) / kind
            (run / f"rank{rank}.outcome").write_text(_diverging_fit(rank, world, ctx, run, kind))
    finally:
        _leave_group(rank, out)


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


# --- weight averaging (EMA) under DDP --------------------------------------------------------------


class BatchNormNet(nn.Module):
    """A tiny classifier with batch norm: under DDP each rank's running statistics are its own."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)
        )

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)  # (B, 3)


class JointLoader:
    """Both ranks' batches of :class:`ShardLoader` concatenated: one process, the same global batch."""

    def __init__(self) -> None:
        self.shards = [ShardLoader(rank, 2) for rank in range(2)]

    def set_epoch(self, epoch: int) -> None:
        for shard in self.shards:
            shard.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.shards[0])

    def __iter__(self):
        for (a, labels_a), (b, labels_b) in zip(*self.shards):
            yield torch.cat([a, b]), torch.cat([labels_a, labels_b])


# run name -> (model, optimiser); "st" is compared with one process, "bn" has buffers to average
EMA_RUNS = {
    "st": ("st-fcn-affine", "sgd"),
    "bn": ("batch-norm-net", "adam"),
    "bn-cut": ("batch-norm-net", "adam"),
}


def _ema_fit(run: Path, name: str, loader, *, ctx=None, resume: bool = False):
    """2 epochs with a weight average, global batch 16: returns (trained model, FitResult)."""
    model_name, optimizer = EMA_RUNS[name]
    torch.manual_seed(0)
    kwargs = {} if model_name == "batch-norm-net" else MODEL_KWARGS
    model = BatchNormNet() if model_name == "batch-norm-net" else create_model(model_name, **kwargs)
    config = TrainConfig(
        dataset="tiny", model=model_name, epochs=2, batch_size=16, optimizer=optimizer, lr=0.05,
        ema=0.5, out=str(run), progress=False,
    )  # fmt: skip
    result = fit(
        model, loader, ShardLoader(0, 1), config, model_name=model_name, model_kwargs=kwargs,
        out_dir=run, ctx=ctx, resume=resume,
    )  # fmt: skip
    return model, result


def _ema_worker(rank: int, world: int, port: int, out: str) -> None:
    """Each run of ``EMA_RUNS`` on 2 ranks; "bn-cut" is killed in epoch 2, then resumed.

    Each rank saves its average and its trained weights to ``out/<run>/rank<r>.pt``.
    """
    ctx = _join_group(rank, world, port)
    try:
        for name in EMA_RUNS:
            run, resume = Path(out) / name, False
            if name == "bn-cut":
                try:  # both ranks are killed at the same step, before its collectives
                    _ema_fit(run, name, ShardLoader(rank, world, stop_at=(2, 1)), ctx=ctx)
                except KeyboardInterrupt:
                    resume = True
            model, result = _ema_fit(run, name, ShardLoader(rank, world), ctx=ctx, resume=resume)
            assert result.evaluated is not None and result.evaluated is not model
            weights = {"ema": result.evaluated.state_dict(), "model": model.state_dict()}
            torch.save(weights, run / f"rank{rank}.pt")
    finally:
        _leave_group(rank, out)


def _differing(a: dict[str, Tensor], b: dict[str, Tensor]) -> list[str]:
    """The names whose tensors differ (or that only one side has)."""
    return sorted(k for k in a.keys() | b.keys() if k not in a or k not in b or not torch.equal(a[k], b[k]))


@pytest.mark.usefixtures("repo_on_path")
def test_weight_average_under_two_gloo_ranks(tmp_path: Path) -> None:
    _spawn(_ema_worker, (str(tmp_path),), timeout_s=120)
    ranks = {
        name: [torch.load(tmp_path / name / f"rank{r}.pt", weights_only=True) for r in range(2)]
        for name in EMA_RUNS
    }
    ckpts = {name: load_checkpoint(tmp_path / name / CHECKPOINT_NAME) for name in EMA_RUNS}
    for name, (rank0, rank1) in ranks.items():
        # Every rank holds the same average and trained weights, batch-norm statistics included;
        # the average is the checkpoint's "model" (written by rank 0), trained weights beside it.
        for part in ("ema", "model"):
            across_ranks = _differing(rank0[part], rank1[part])
            assert not across_ranks, (name, part, across_ranks)
        assert not _differing(ckpts[name]["model"], rank0["ema"]), name
        assert not _differing(ckpts[name]["train_model"], rank0["model"]), name
        assert _differing(rank0["ema"], rank0["model"]), name  # the average is not the trained weights
        assert ckpts[name]["ema"] == {"decay": 0.5, "updates": 2 * 3}, name
    assert "layers.2.running_mean" in ranks["bn"][0]["ema"]
    # A run killed in epoch 2 and resumed on 2 ranks ends like the uninterrupted one, bit for bit.
    for part in ("model", "train_model"):
        assert not _differing(ckpts["bn-cut"][part], ckpts["bn"][part]), part
    for rank in range(2):
        assert not _differing(ranks["bn-cut"][rank]["ema"], ranks["bn"][rank]["ema"]), rank
    # The recorded test metrics are the average's.
    averaged = BatchNormNet().eval()
    averaged.load_state_dict(ckpts["bn"]["model"])
    assert ckpts["bn"]["metrics"]["test_loss"] == pytest.approx(
        evaluate(averaged, ShardLoader(0, 1))["loss"], rel=1e-6
    )
    # 2 ranks x 8 images per step = 1 process x 16 (no batch norm in "st"): DDP averages the
    # gradients, so the weights and their average match one process up to rounding.
    model, result = _ema_fit(tmp_path / "single", "st", JointLoader())
    assert result.evaluated is not None
    for part, single in (("model", model.state_dict()), ("ema", result.evaluated.state_dict())):
        for key, value in single.items():
            torch.testing.assert_close(
                ranks["st"][0][part][key], value, rtol=1e-5, atol=1e-6, msg=f"{part} {key}"
            )


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
