"""The weight average (``TrainConfig.ema``): its arithmetic, fit's use of it, resume, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tests.engine.test_engine_loop import MODEL, MODEL_KWARGS, TinyLoader
from torch import nn

from stnkit.engine import (
    CHECKPOINT_NAME,
    CheckpointError,
    ModelEma,
    ResumeMismatchError,
    TrainConfig,
    evaluate,
    fit,
    load_checkpoint,
    save_checkpoint,
)
from stnkit.models import create_model


def _set(module: nn.Module, **values: float) -> None:
    """Fill the named entries of ``module``'s state dict (parameters and buffers) with values."""
    state = module.state_dict()
    with torch.no_grad():
        for name, value in values.items():
            state[name].fill_(value)


def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))


def test_three_updates_match_a_hand_computation() -> None:
    model = _net()
    _set(model, **{"0.weight": 1.0, "1.running_mean": 10.0})
    ema = ModelEma(model, decay=0.2)
    # Decays: min(0.2, 1/10) = 0.1, min(0.2, 2/11) = 2/11, min(0.2, 3/12) = 0.2.
    assert ema.current_decay() == pytest.approx(0.1)
    for weight, mean in [(2.0, 20.0), (4.0, 40.0), (8.0, 80.0)]:
        _set(model, **{"0.weight": weight, "1.running_mean": mean, "1.num_batches_tracked": weight})
        ema.update()
    # weight: 0.1 * 1 + 0.9 * 2 = 1.9; 2/11 * 1.9 + 9/11 * 4 = 39.8/11; 0.2 * 39.8/11 + 0.8 * 8.
    expected = 0.2 * 39.8 / 11 + 0.8 * 8
    assert float(ema.module[0].weight) == pytest.approx(expected, rel=1e-6)
    assert float(ema.module[0].weight) == pytest.approx(7.1236364, rel=1e-6)
    # Batch-norm statistics are averaged the same way (ten times the weights here) ...
    assert float(ema.module[1].running_mean) == pytest.approx(10 * expected, rel=1e-6)
    # ... and the integer counter is copied.
    assert int(ema.module[1].num_batches_tracked) == 8
    assert ema.updates == 3 and ema.state_dict() == {"decay": 0.2, "updates": 3}


def test_the_average_is_a_frozen_copy() -> None:
    model = _net()
    ema = ModelEma(model, decay=0.999)
    assert ema.module is not model and not ema.module.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters())
    for a, b in zip(ema.module.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()


@pytest.mark.parametrize("decay", [0, 1, 1.5, -0.1, True, "0.9"])
def test_bad_decay_is_refused(decay) -> None:
    with pytest.raises(ValueError, match=r"EMA decay must be a number in \(0, 1\), got"):
        ModelEma(_net(), decay=decay)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5])
def test_config_refuses_a_decay_outside_0_1(decay: float) -> None:
    with pytest.raises(ValueError, match=r"ema must be in \(0, 1\)"):
        TrainConfig(dataset="mnist", model="cnn", ema=decay)


def test_load_state_dict_restores_and_checks() -> None:
    model = _net()
    ema = ModelEma(model, decay=0.5)
    _set(model, **{"0.weight": 3.0})
    ema.update()
    again = ModelEma(_net(), decay=0.5)
    again.load_state_dict(ema.state_dict(), ema.module.state_dict())
    assert again.updates == 1 and torch.equal(again.module[0].weight, ema.module[0].weight)
    with pytest.raises(ValueError, match="decay 0.5, this run 0.9"):
        ModelEma(_net(), decay=0.9).load_state_dict(ema.state_dict(), ema.module.state_dict())
    with pytest.raises(ValueError, match="'updates', an int >= 0"):
        again.load_state_dict({"decay": 0.5}, ema.module.state_dict())


# --- in fit ----------------------------------------------------------------------------------------


def _fit(tmp_path: Path, loader: TinyLoader, *, resume: bool = False, **overrides):
    values = dict(
        dataset="tiny", model=MODEL, epochs=3, batch_size=12, lr=0.01, out=str(tmp_path),
        progress=False, ema=0.9,
    )  # fmt: skip
    values.update(overrides)
    torch.manual_seed(0)
    model = create_model(MODEL, **MODEL_KWARGS)
    result = fit(
        model, loader, TinyLoader(seed=1), TrainConfig(**values), model_name=MODEL,
        model_kwargs=MODEL_KWARGS, out_dir=tmp_path, resume=resume,
    )  # fmt: skip
    return model, result


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fit_evaluates_and_saves_the_average(tmp_path: Path) -> None:
    model, result = _fit(tmp_path, TinyLoader())
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)  # weights_only: no code runs
    assert state["ema"] == {"decay": 0.9, "updates": 3 * len(TinyLoader())}
    averaged = result.evaluated
    assert averaged is not None and averaged is not model
    assert _equal(state["model"], averaged.state_dict())
    assert _equal(state["train_model"], model.state_dict())
    assert not _equal(state["model"], state["train_model"])
    # The recorded test metrics are the average's.
    scores = evaluate(averaged, TinyLoader(seed=1))
    assert result.final["test_loss"] == pytest.approx(scores["loss"], rel=1e-6)
    assert evaluate(model, TinyLoader(seed=1))["loss"] != pytest.approx(scores["loss"], rel=1e-6)


def test_without_ema_nothing_changes(tmp_path: Path) -> None:
    model, result = _fit(tmp_path, TinyLoader(), ema=None)
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert "train_model" not in state and "ema" not in state
    assert result.evaluated is model
    assert _equal(state["model"], model.state_dict())


def test_resumed_run_has_the_same_average_bit_for_bit(tmp_path: Path) -> None:
    _fit(tmp_path / "full", TinyLoader())
    with pytest.raises(KeyboardInterrupt):  # killed in the middle of epoch 2
        _fit(tmp_path / "cut", TinyLoader(fail_at=(2, 2)))
    assert load_checkpoint(tmp_path / "cut" / CHECKPOINT_NAME)["epoch"] == 1
    _fit(tmp_path / "cut", TinyLoader(), resume=True)
    full = load_checkpoint(tmp_path / "full" / CHECKPOINT_NAME)
    resumed = load_checkpoint(tmp_path / "cut" / CHECKPOINT_NAME)
    assert _equal(full["model"], resumed["model"])
    assert _equal(full["train_model"], resumed["train_model"])
    assert full["ema"] == resumed["ema"]


def test_resume_refuses_another_average(tmp_path: Path) -> None:
    _fit(tmp_path / "plain", TinyLoader(), ema=None, epochs=1)
    with pytest.raises(ResumeMismatchError, match="trained without a weight average"):
        _fit(tmp_path / "plain", TinyLoader(), resume=True, ema=0.9)
    _fit(tmp_path / "ema", TinyLoader(), epochs=1)
    with pytest.raises(ResumeMismatchError, match="trained with a weight average"):
        _fit(tmp_path / "ema", TinyLoader(), resume=True, ema=None)
    with pytest.raises(ResumeMismatchError, match="decay 0.9, this run 0.5"):
        _fit(tmp_path / "ema", TinyLoader(), resume=True, ema=0.5)


def test_checkpoint_fields_of_the_average_are_checked(tmp_path: Path) -> None:
    _fit(tmp_path, TinyLoader(), epochs=1)
    state = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    state.pop("format"), state.pop("version")
    save_checkpoint({**state, "train_model": {"w": 1.0}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="field 'train_model' must be a dict of str -> tensor"):
        load_checkpoint(tmp_path / "bad.pt")
