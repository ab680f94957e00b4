"""The training loop on tiny synthetic data: learning, resume, divergence, param groups."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import Tensor

from stnkit.engine import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    CheckpointError,
    DistContext,
    DivergenceError,
    ResumeMismatchError,
    TrainConfig,
    build_optimizer,
    build_scheduler,
    config_from_dict,
    evaluate,
    fit,
    load_checkpoint,
    localization_parameters,
    read_jsonl,
    save_checkpoint,
)
from stnkit.models import create_model

MODEL = "st-fcn-affine"
MODEL_KWARGS = {"image_size": [8, 8], "num_classes": 3, "hidden": [16], "loc_hidden": [8]}


class TinyLoader:
    """Three separable classes of 8x8 images; order reshuffled per epoch from (seed, epoch)."""

    def __init__(self, n: int = 48, batch: int = 12, *, seed: int = 0, fail_at=None, nan_at=None):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 3
        self.images = torch.rand(n, 1, 8, 8, generator=g) * 0.2
        for c in range(3):  # a bright bar whose row tells the class
            self.images[self.labels == c, 0, 2 * c + 1, :] += 0.8
        self.batch, self.seed, self.epoch = batch, seed, 1
        self.fail_at, self.nan_at = fail_at, nan_at  # (epoch, step)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.labels) // self.batch

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.randperm(len(self.labels), generator=torch.Generator().manual_seed(self.epoch))
        for step in range(len(self)):
            if self.fail_at == (self.epoch, step):
                raise KeyboardInterrupt("killed")
            idx = order[step * self.batch : (step + 1) * self.batch]
            images = self.images[idx].clone()
            if self.nan_at == (self.epoch, step):
                images[0, 0, 0, 0] = float("nan")
            yield images, self.labels[idx]


def _config(tmp_path: Path, **overrides) -> TrainConfig:
    values = dict(
        dataset="tiny",
        model=MODEL,
        epochs=3,
        batch_size=12,
        lr=0.01,
        out=str(tmp_path),
        progress=False,
        snapshot_images=4,
    )
    values.update(overrides)
    return TrainConfig(**values)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(MODEL, **MODEL_KWARGS)


def _fit(tmp_path: Path, loader: TinyLoader, *, resume: bool = False, **overrides):
    config = _config(tmp_path, **overrides)
    model = _model()
    result = fit(
        model,
        loader,
        TinyLoader(seed=1),
        config,
        model_name=MODEL,
        model_kwargs=MODEL_KWARGS,
        out_dir=tmp_path,
        resume=resume,
    )
    return model, result


def test_fit_learns_and_writes_metrics(tmp_path: Path) -> None:
    _, result = _fit(tmp_path, TinyLoader(), epochs=4)
    records = read_jsonl(tmp_path / METRICS_NAME)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert result.final["test_accuracy"] > 0.9
    for key in ("images_per_s", "lr", "test_error", "elapsed_s", "train_accuracy"):
        assert key in records[-1]
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert state["epoch"] == 4 and state["model_name"] == MODEL


def test_resume_equals_uninterrupted(tmp_path: Path) -> None:
    full, _ = _fit(tmp_path / "full", TinyLoader())
    with pytest.raises(KeyboardInterrupt):  # killed in the middle of epoch 2
        _fit(tmp_path / "cut", TinyLoader(fail_at=(2, 2)))
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT_NAME)["epoch"] == 1
    resumed, result = _fit(tmp_path / "cut", TinyLoader(), resume=True)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert [r["epoch"] for r in read_jsonl(tmp_path / "cut" / METRICS_NAME)] == [1, 2, 3]


def test_nan_input_stops_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DivergenceError, match="(non-finite|must be finite).* epoch 2, step 3"):
        _fit(tmp_path, TinyLoader(nan_at=(2, 2)))
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values())


def test_huge_learning_rate_is_caught(tmp_path: Path) -> None:
    with pytest.raises(DivergenceError, match="finite"):
        _fit(tmp_path, TinyLoader(), optimizer="sgd", lr=1e30, grad_clip=None, epochs=5)


def test_localization_group_gets_its_multiplier() -> None:
    model = _model()
    config = TrainConfig(dataset="mnist", model="st-cnn-affine", lr=0.5, loc_lr_mult=0.1)
    opt = build_optimizer(model, config)
    loc = {id(p) for p in localization_parameters(model)}
    assert loc and loc == {id(p) for p in model.stn.parameters()}
    groups = {g["name"]: g for g in opt.param_groups}
    assert groups["localization"]["lr"] == pytest.approx(0.05)
    assert groups["classifier"]["lr"] == pytest.approx(0.5)
    assert {id(p) for p in groups["localization"]["params"]} == loc


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_weight_decay_spares_biases_so_the_transformer_keeps_its_identity(optimizer: str) -> None:
    model = _model()
    config = TrainConfig(
        dataset="mnist", model=MODEL, optimizer=optimizer, lr=0.1, weight_decay=0.5, loc_lr_mult=0.5
    )
    opt = build_optimizer(model, config)
    groups = {g["name"]: g for g in opt.param_groups}
    assert set(groups) == {"classifier", "classifier-no-decay", "localization", "localization-no-decay"}
    every = [id(p) for g in opt.param_groups for p in g["params"]]
    assert sorted(every) == sorted(id(p) for p in model.parameters())  # each parameter exactly once
    for name, group in groups.items():
        no_decay = name.endswith("-no-decay")
        assert group["weight_decay"] == (0.0 if no_decay else 0.5)
        assert all((p.ndim < 2) == no_decay for p in group["params"])
        assert group["lr"] == pytest.approx(0.05 if name.startswith("localization") else 0.1)
    # Steps of decay alone (zero gradients) leave the identity transform where it started.
    images = torch.rand(4, 1, 8, 8)
    before = model.stn.localize(images).detach()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    for _ in range(20):
        opt.step()
    torch.testing.assert_close(model.stn.localize(images).detach(), before)
    assert before.abs().sum() > 0  # the identity's parameters are not all zero


def test_without_weight_decay_the_groups_are_as_before() -> None:
    opt = build_optimizer(_model(), TrainConfig(dataset="mnist", model=MODEL))
    assert [g["name"] for g in opt.param_groups] == ["classifier", "localization"]


@pytest.mark.parametrize("schedule", ["onecycle", "cosine", "step", "constant"])
def test_schedules_stay_in_range(schedule: str) -> None:
    model = torch.nn.Linear(2, 2)
    config = TrainConfig(dataset="mnist", model="cnn", schedule=schedule, epochs=6, lr=1.0)
    opt = build_optimizer(model, config)
    sched = build_scheduler(opt, config, steps_per_epoch=5)
    lrs = []
    for _ in range(30):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert max(lrs) <= 1.0 + 1e-9 and min(lrs) >= 0
    if schedule != "constant":
        assert lrs[-1] < 0.2


def test_evaluate_counts() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    metrics = evaluate(model, TinyLoader(n=24, batch=12))
    assert metrics["count"] == 24
    assert metrics["error"] == pytest.approx(1 - metrics["accuracy"])


@pytest.mark.parametrize(
    "bad",
    [
        {"epochs": 0},
        {"lr": -1.0},
        {"optimizer": "lion"},
        {"schedule": "warm"},
        {"grad_clip": 0.0},
        {"batch_size": 0},
        {"limit": 0},
        {"seed": -1},
        {"seed": 2**32},
        {"snapshot_images": 0},
        {"snapshot_images": 65},
    ],
)
def test_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        TrainConfig(dataset="mnist", model="cnn", **bad)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("batch_size", "abc", "batch_size must be int, got str 'abc'"),
        ("epochs", 2.5, "epochs must be int, got float 2.5"),
        ("lr", True, "lr must be float, got bool True"),
        ("grad_clip", "5", "grad_clip must be float or None, got str '5'"),
        ("model_kwargs", [1], "model_kwargs must be dict, got list [1]"),
        ("data_root", 3, "data_root must be str or None, got int 3"),
        ("deterministic", 1, "deterministic must be bool, got int 1"),
    ],
)
def test_config_names_a_value_of_the_wrong_type_before_comparing_it(
    field: str, value: object, message: str
) -> None:
    # A config read back from a checkpoint or a hand-edited file may hold any JSON value.
    with pytest.raises(ValueError) as caught:
        config_from_dict({"dataset": "mnist", "model": "cnn", field: value})
    assert str(caught.value) == message


def test_config_takes_an_int_where_a_float_is_declared_and_paths_for_folders(tmp_path: Path) -> None:
    assert TrainConfig(dataset="mnist", model="cnn", lr=1, grad_clip=None).lr == 1
    config = TrainConfig(dataset="mnist", model="cnn", out=tmp_path / "run", data_root=tmp_path)
    assert (config.out, config.data_root) == (str(tmp_path / "run"), str(tmp_path))
    config.save(tmp_path / "config.json")  # JSON holds the folders as text


def test_config_roundtrip_and_presets(tmp_path: Path) -> None:
    import json

    from stnkit.engine import config_from_dict, paper_config

    config = TrainConfig(dataset="mnist", model="cnn", epochs=7, model_kwargs={"hidden": [64]})
    config.save(tmp_path / "config.json")
    assert config_from_dict(json.loads((tmp_path / "config.json").read_text())) == config
    with pytest.raises(ValueError, match="unknown config keys"):
        config_from_dict({**config.to_dict(), "learning_rate": 1.0})
    paper = paper_config("rts", "st-cnn-affine", epochs=5)
    assert (paper.optimizer, paper.lr, paper.schedule, paper.epochs) == ("sgd", 0.01, "step", 5)
    assert (paper.dataset, paper.model) == ("rts", "st-cnn-affine")
    with pytest.raises(TypeError):
        TrainConfig()  # type: ignore[call-arg]  # the engine has no default dataset or model


def _rewrite_checkpoint(path: Path, *, drop: tuple[str, ...] = (), **changes) -> None:
    """Edit a checkpoint: replace the entries in ``changes``, remove those in ``drop``."""
    state = {**load_checkpoint(path), **changes}
    save_checkpoint({k: v for k, v in state.items() if k not in ("format", "version", *drop)}, path)


def test_checkpoint_records_world_size(tmp_path: Path) -> None:
    _fit(tmp_path, TinyLoader(), epochs=1)
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["world_size"] == 1


@pytest.mark.parametrize(("saved", "now"), [(2, 1), (1, 2), (4, 2)])
def test_resume_under_another_world_size_is_refused(tmp_path: Path, saved: int, now: int) -> None:
    _fit(tmp_path, TinyLoader(), epochs=1)
    _rewrite_checkpoint(tmp_path / CHECKPOINT_NAME, world_size=saved)
    # Refused before any collective, so a rank-0 context of a larger world needs no process group.
    with pytest.raises(ResumeMismatchError) as info:
        fit(
            _model(),
            TinyLoader(),
            None,
            _config(tmp_path),
            model_name=MODEL,
            model_kwargs=MODEL_KWARGS,
            out_dir=tmp_path,
            resume=True,
            ctx=DistContext(rank=0, world_size=now),
        )
    message = str(info.value)
    assert isinstance(info.value, CheckpointError) and "\n" not in message
    assert f"trained with {saved} process" in message and f"this run has {now} process" in message
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 1  # left as it was


def test_resume_without_recorded_world_size_is_accepted(tmp_path: Path) -> None:
    _fit(tmp_path, TinyLoader(), epochs=1)
    # A checkpoint written before the world size was recorded.
    _rewrite_checkpoint(tmp_path / CHECKPOINT_NAME, drop=("world_size",))
    _, result = _fit(tmp_path, TinyLoader(), resume=True, epochs=2)
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_cpu_time_is_counted_per_epoch_and_summed_over_a_resume(tmp_path: Path) -> None:
    _fit(tmp_path, TinyLoader(), epochs=1)
    first = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert first["cpu_s"] == first["metrics"]["cpu_s"] > 0
    # Resumed from a checkpoint that says it has used 1,000 CPU seconds: the count goes on from there.
    _rewrite_checkpoint(tmp_path / CHECKPOINT_NAME, cpu_s=1000.0)
    _, result = _fit(tmp_path, TinyLoader(), resume=True, epochs=2)
    assert 1000.0 < result.final["cpu_s"] < 1000.0 + 60.0
    assert load_checkpoint(tmp_path / CHECKPOINT_NAME)["cpu_s"] == result.final["cpu_s"]


def test_resume_of_a_run_that_did_not_count_cpu_time_records_none(tmp_path: Path) -> None:
    # Its earlier epochs' CPU time is unknown: a partial count would understate the run.
    _fit(tmp_path, TinyLoader(), epochs=1)
    _rewrite_checkpoint(tmp_path / CHECKPOINT_NAME, drop=("cpu_s",))
    _, result = _fit(tmp_path, TinyLoader(), resume=True, epochs=2)
    assert "cpu_s" not in result.final
    assert "cpu_s" not in load_checkpoint(tmp_path / CHECKPOINT_NAME)


def test_resume_another_model_or_shape_is_refused(tmp_path: Path) -> None:
    _fit(tmp_path, TinyLoader(), epochs=1)
    with pytest.raises(ResumeMismatchError, match="holds model 'st-fcn-affine', not 'fcn'"):
        fit(
            _model(), TinyLoader(), None, _config(tmp_path), model_name="fcn",
            model_kwargs=MODEL_KWARGS, out_dir=tmp_path, resume=True,
        )  # fmt: skip
    weights = load_checkpoint(tmp_path / CHECKPOINT_NAME)["model"]
    first = next(iter(weights))
    _rewrite_checkpoint(tmp_path / CHECKPOINT_NAME, model={**weights, first: torch.zeros(1)})
    with pytest.raises(ResumeMismatchError, match=f"weights do not fit the model: .*{first}") as info:
        _fit(tmp_path, TinyLoader(), resume=True)
    assert "\n" not in str(info.value)


def test_resume_with_a_damaged_optimizer_or_schedule_state_is_one_line(tmp_path: Path) -> None:
    _fit(tmp_path, TinyLoader(), epochs=1)
    saved = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    moments = saved["optimizer"]["state"][0]
    wrong_shape = {
        **saved["optimizer"],
        "state": {**saved["optimizer"]["state"], 0: {**moments, "exp_avg": torch.zeros(3)}},
    }
    for fields, message in [
        ({"scheduler": {}}, "optimizer or schedule state does not fit .*KeyError"),
        ({"optimizer": {}}, "optimizer or schedule state does not fit .*KeyError"),
        ({"optimizer": wrong_shape}, r"the optimizer's 'exp_avg' has shape \[3\], its parameter"),
    ]:
        _rewrite_checkpoint(tmp_path / CHECKPOINT_NAME, **{**saved, **fields})
        with pytest.raises(ResumeMismatchError, match=message) as info:
            _fit(tmp_path, TinyLoader(), resume=True, epochs=2)
        assert "\n" not in str(info.value)
    _rewrite_checkpoint(tmp_path / CHECKPOINT_NAME, **{**saved, "epoch": 999})
    with pytest.raises(CheckpointError, match="is at epoch 999, beyond the recipe's 2 epochs"):
        _fit(tmp_path, TinyLoader(), resume=True, epochs=2)


def test_resume_without_optimizer_state_is_refused(tmp_path: Path) -> None:
    _fit(tmp_path, TinyLoader(), epochs=1)
    _rewrite_checkpoint(tmp_path / CHECKPOINT_NAME, drop=("optimizer",))
    with pytest.raises(CheckpointError, match="has no optimizer state, so it cannot be resumed"):
        _fit(tmp_path, TinyLoader(), resume=True)


def test_the_epoch_line_shows_validation_error_when_there_is_a_split(capsys) -> None:
    from stnkit.engine.loop import _print_epoch

    base = {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.9, "images_per_s": 100.0}
    test = {"test_loss": 0.25, "test_error": 0.0125}
    _print_epoch({**base, **test, "val_loss": 0.5, "val_error": 0.0375}, 5)
    _print_epoch({**base, **test}, 5)
    with_val, without_val = capsys.readouterr().out.splitlines()
    assert "val loss 0.5000 error 3.75%" in with_val and "test" not in with_val
    assert "test loss 0.2500 error 1.25%" in without_val


def test_a_config_without_dataset_or_model_is_a_value_error() -> None:
    from stnkit.engine import config_from_dict

    values = TrainConfig(dataset="mnist", model="cnn").to_dict()
    del values["dataset"]
    with pytest.raises(ValueError, match=r"config lacks the keys \['dataset'\]"):
        config_from_dict(values)
