"""Where a run computes: device names, a GPU this machine lacks, multi-process runs kept on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from stnkit.engine import TrainConfig, config_from_dict, fit, model_device, resolve_device
from stnkit.engine import loop as engine_loop
from stnkit.engine.distributed import DistContext


@pytest.mark.parametrize("name", ["gpu", "cuda:", "cuda:x", "CPU", ""])
def test_a_run_names_cpu_cuda_or_cuda_n(name: object) -> None:
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda' or 'cuda:N'"):
        TrainConfig(dataset="mnist", model="cnn", device=name)  # type: ignore[arg-type]
    for good in ("cpu", "cuda", "cuda:1"):
        assert TrainConfig(dataset="mnist", model="cnn", device=good).device == good


@pytest.mark.parametrize("name", [0, None])
def test_a_device_that_is_not_a_string_is_named_by_its_type(name: object) -> None:
    with pytest.raises(ValueError, match=f"device must be str, got {type(name).__name__} {name}"):
        TrainConfig(dataset="mnist", model="cnn", device=name)  # type: ignore[arg-type]


def test_a_config_saved_before_devices_runs_on_the_cpu() -> None:
    saved = TrainConfig(dataset="mnist", model="cnn").to_dict()
    del saved["device"]
    assert config_from_dict(saved).device == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_gpu_this_machine_lacks_is_refused_in_one_line() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match=f"device '{name}' asked for, but torch") as err:
            resolve_device(name)
        assert "\n" not in str(err.value)


def test_model_device_is_the_first_parameters_or_the_cpu() -> None:
    assert model_device(nn.Linear(2, 3)) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")  # nothing to ask: the CPU
    assert model_device(nn.Linear(2, 3, device="meta")) == torch.device("meta")


def test_multi_process_training_stays_on_the_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Pretend this machine has the GPU, so that the refusal itself is what is tested.
    monkeypatch.setattr(engine_loop, "resolve_device", lambda name: torch.device("cuda"))
    config = TrainConfig(dataset="tiny", model="linear", device="cuda", progress=False)
    batches = [(torch.zeros(2, 4), torch.tensor([0, 1]))]
    with pytest.raises(
        ValueError, match="multi-process training runs on the CPU \\(gloo\\) only, not on 'cuda'"
    ):
        fit(
            nn.Linear(4, 2), batches, None, config, model_name="linear", model_kwargs={},
            out_dir=tmp_path, ctx=DistContext(rank=0, world_size=2),
        )  # fmt: skip
    assert not any(tmp_path.iterdir())  # refused before anything was written
