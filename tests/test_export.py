"""stnkit.export: the transformer's outputs (theta, transformed) beside the logits, held to torch.

The CLI's plain export of a trained run is tested in tests/cli/test_cli_train.py; these need no data.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stnkit import cli
from stnkit.engine import TrainConfig, save_checkpoint
from stnkit.export import TRANSFORMER_OUTPUTS, export_onnx, onnx_differences, reference_outputs
from stnkit.models import create_model

pytest.importorskip("onnxscript", reason="ONNX export needs the onnx extra")
ort = pytest.importorskip("onnxruntime", reason="the parity checks need onnxruntime")

SIZE = (1, 42, 42)
KWARGS = {
    "in_channels": 1,
    "image_size": [42, 42],
    "channels": [4, 8],
    "hidden": [16],
    "loc_channels": [4, 4],
}


def _st_cnn() -> torch.nn.Module:
    """A small ST-CNN (42x42 -> 28x28 crop) whose transformer is not the identity."""
    model = create_model("st-cnn-affine", **KWARGS).eval()
    with torch.no_grad():
        # A fresh head predicts the identity for every input; random weights make theta vary.
        model.stn.head.weight.normal_(0.0, 0.05)
        model.stn.head.bias.add_(torch.tensor([0.1, -0.2, 0.1, 0.15, -0.1, -0.05]))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    model = _st_cnn()
    path = tmp_path_factory.mktemp("onnx") / "st-cnn.onnx"
    export_onnx(model, torch.rand(2, *SIZE), path, outputs=TRANSFORMER_OUTPUTS)
    return model, path


def test_reference_outputs_are_the_forward_pass() -> None:
    model = _st_cnn()
    x = torch.rand(3, *SIZE)
    got = reference_outputs(model, x, TRANSFORMER_OUTPUTS)
    with torch.no_grad():
        logits = model(x)
        transformed = model.stn(x)
    params = model.stn.last_params  # set by the plain forward pass above
    torch.testing.assert_close(got["logits"], logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(got["transformed"], transformed, rtol=0, atol=0)
    torch.testing.assert_close(got["theta"], params.view(3, 2, 3), rtol=0, atol=0)
    assert transformed.shape == (3, 1, 28, 28)
    assert (got["theta"] - torch.tensor([[1.0, 0, 0], [0, 1, 0]])).abs().max() > 0.05  # not the identity


def test_export_with_the_transformer_matches_torch_in_onnxruntime(exported) -> None:
    model, path = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "theta", "transformed"]
    x = torch.rand(5, *SIZE)  # another batch size than the example's
    logits, theta, transformed = session.run(None, {"images": x.numpy()})
    expected = reference_outputs(model, x, TRANSFORMER_OUTPUTS)
    assert logits.shape == (5, 10) and theta.shape == (5, 2, 3) and transformed.shape == (5, 1, 28, 28)
    torch.testing.assert_close(torch.from_numpy(logits), expected["logits"], rtol=0, atol=1e-4)
    torch.testing.assert_close(torch.from_numpy(theta), expected["theta"], rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.from_numpy(transformed), expected["transformed"], rtol=0, atol=1e-5)


def test_onnx_differences_names_each_output_of_the_file(exported) -> None:
    model, path = exported
    diffs = onnx_differences(model, path, torch.rand(4, *SIZE))
    assert list(diffs) == ["logits", "theta", "transformed"]
    assert all(0 <= diff <= 1e-4 for diff in diffs.values())
    # A changed model is noticed in every output (the comparison is real).
    other = _st_cnn()
    with torch.no_grad():
        other.stn.head.bias.add_(0.1)
    changed = onnx_differences(other, path, torch.rand(4, *SIZE))
    assert min(changed.values()) > 1e-3


def test_default_export_has_only_the_logits(tmp_path: Path) -> None:
    path = export_onnx(_st_cnn(), torch.rand(2, *SIZE), tmp_path / "m.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits"]


@pytest.mark.parametrize(
    ("model", "outputs", "expected"),
    [
        ("cnn", TRANSFORMER_OUTPUTS, "Classifier.stn is NoneType"),
        ("mlp", ("theta",), "got a Sequential"),
        (
            "st-cnn-affine",
            ("logits", "grid"),
            "names from ['logits', 'theta', 'transformed'], got ['logits', 'grid']",
        ),
        ("st-cnn-affine", ("logits", "logits"), "got ['logits', 'logits']"),
        ("st-cnn-affine", (), "got []"),
    ],
    ids=["no-transformer", "not-a-classifier", "unknown-name", "twice", "empty"],
)
def test_bad_outputs_are_refused_before_exporting(
    model: str, outputs: tuple[str, ...], expected: str, tmp_path: Path
) -> None:
    if model == "mlp":
        network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(42 * 42, 10))
    else:
        network = create_model(model, **KWARGS)
    with pytest.raises(ValueError, match="outputs") as err:
        export_onnx(network, torch.rand(2, *SIZE), tmp_path / "m.onnx", outputs=outputs)
    assert expected in str(err.value)
    assert not (tmp_path / "m.onnx").exists()


def _checkpoint(path: Path, model_name: str) -> Path:
    model = _st_cnn() if model_name == "st-cnn-affine" else create_model(model_name, **KWARGS)
    state = {
        "model_name": model_name,
        "model_kwargs": KWARGS,
        "model": model.state_dict(),
        "epoch": 1,
        "config": TrainConfig(dataset="rts", model=model_name).to_dict(),
    }
    return save_checkpoint(state, path)


def test_cli_with_transformer_checks_every_output(tmp_path: Path, capsys) -> None:
    ckpt = _checkpoint(tmp_path / "checkpoint.pt", "st-cnn-affine")
    out = tmp_path / "m.onnx"
    assert cli.main(["export", str(ckpt), "--onnx", str(out), "--with-transformer"]) == 0
    printed = capsys.readouterr().out
    assert "logits" in printed and "theta" in printed and "transformed" in printed
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "theta", "transformed"]


def test_cli_with_transformer_refuses_a_model_without_one(tmp_path: Path, capsys) -> None:
    ckpt = _checkpoint(tmp_path / "checkpoint.pt", "cnn")
    argv = ["export", str(ckpt), "--onnx", str(tmp_path / "m.onnx"), "--with-transformer"]
    assert cli.main(argv) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "(cnn)" in err and "SpatialTransformer" in err
    assert not (tmp_path / "m.onnx").exists()


def test_the_file_has_the_opset_asked_for_or_none_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx

    import stnkit.export as export_module

    def opset_of(path: Path) -> set[int]:
        return {op.version for op in onnx.load(str(path)).opset_import if op.domain in ("", "ai.onnx")}

    model, example = _st_cnn(), torch.rand(2, *SIZE)
    # Whatever torch can convert to today: a file at the opset asked for, or an error and no file.
    for opset in (16, 17, 20):
        path = tmp_path / f"m{opset}.onnx"
        try:
            export_onnx(model, example, path, opset=opset)
        except ValueError as err:
            assert f"could not convert the graph to opset {opset}" in str(err) and not path.exists()
        else:
            assert opset_of(path) == {opset}
    # Where torch keeps its own opset (as torch 2.13 does for the 28x28 ST-CNN at 17), no file is
    # written, and a file already there (an earlier export) is left as it was.
    monkeypatch.setattr(export_module, "_default_opset", lambda proto: 18)
    with pytest.raises(ValueError, match="could not convert the graph to opset 20 .*its own, 18"):
        export_onnx(model, example, tmp_path / "new.onnx", opset=20)
    assert not (tmp_path / "new.onnx").exists()
    (tmp_path / "kept.onnx").write_bytes(b"an earlier export")
    with pytest.raises(ValueError, match="could not convert the graph to opset 20"):
        export_onnx(model, example, tmp_path / "kept.onnx", opset=20)
    assert (tmp_path / "kept.onnx").read_bytes() == b"an earlier export"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    with pytest.raises(ValueError, match=f"opset must be between 16 and {onnx.defs.onnx_opset_version()}"):
        export_onnx(model, example, tmp_path / "far.onnx", opset=99)


def test_a_folder_in_the_files_place_is_refused_before_exporting(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").mkdir()
    with pytest.raises(IsADirectoryError, match=r"^cannot write .*m\.onnx: it is a folder, not a file$"):
        export_onnx(_st_cnn(), torch.rand(2, *SIZE), tmp_path / "m.onnx")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux's /proc, where no file can be made")
def test_a_file_that_cannot_be_written_is_named_not_the_temporary_file() -> None:
    with pytest.raises(OSError, match=r"^cannot write /proc/stnkit-export\.onnx: "):
        export_onnx(_st_cnn(), torch.rand(2, *SIZE), "/proc/stnkit-export.onnx")


def test_only_the_exporters_announcements_are_dropped_and_only_while_exporting() -> None:
    import logging

    from stnkit.export import _EXPORTER_FILTERS, _quiet_exporter_logs

    def passes(logger: str, message: str, level: int = logging.WARNING) -> bool:
        record = logging.LogRecord(logger, level, __file__, 1, message, None, None)
        return logging.getLogger(logger).filter(record)

    converter = "onnxscript.version_converter"
    announcement = "The model version conversion is not supported by the onnxscript version converter and ..."
    with _quiet_exporter_logs():
        assert not passes(converter, announcement)
        assert not passes("torch.onnx._internal.exporter._registration", "torchvision::nms skipped")
        assert passes("torch.onnx._internal.exporter._registration", "failed", logging.ERROR)
        assert passes(converter, "something else went wrong")
        # A skipped node comes from a child logger, which the parent's filter does not see.
        assert passes(f"{converter}._version_converter", "Skipping version conversion for node Foo")
    assert passes(converter, announcement)  # the filters are gone after the block
    assert all(
        log_filter not in logging.getLogger(name).filters for name, log_filter in _EXPORTER_FILTERS.items()
    )


def test_a_thin_plate_model_exports_from_a_fresh_process_and_leaves_it_working(tmp_path: Path) -> None:
    # Its per-size spline tables are computed and cached on first use; while the exporter traces
    # they must be computed for real (torch's exporter has no linalg.inv) and never cached fake.
    script = f"""
import torch, stnkit
from stnkit.export import export_onnx, onnx_differences
from stnkit.models import create_model
model = create_model("st-fcn-tps", image_size=(28, 28), hidden=[8]).eval()
path = export_onnx(model, torch.rand(2, 1, 28, 28), {str(tmp_path / "tps.onnx")!r})
after = stnkit.warp(torch.rand(1, 1, 5, 5), stnkit.identity_params("tps", 1), transform="tps")
assert type(after) is torch.Tensor, type(after)
print(max(onnx_differences(model, path, torch.rand(3, 1, 28, 28)).values()))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert float(done.stdout.strip().splitlines()[-1]) < 1e-4


@pytest.mark.parametrize(
    "opset, error, message",
    [("18", TypeError, "opset must be an int, got '18'"), (18.5, TypeError, "opset must be an int, got 18.5"),
     (True, TypeError, "opset must be an int, got True")],
)  # fmt: skip
def test_an_opset_that_is_not_an_int_is_named(
    tmp_path: Path, opset: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)):
        export_onnx(_st_cnn(), torch.rand(2, *SIZE), tmp_path / "m.onnx", opset=opset)  # type: ignore[arg-type]


def test_an_example_the_model_cannot_take_fails_before_the_exporter(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="example must have a floating-point dtype"):
        export_onnx(_st_cnn(), torch.zeros(2, *SIZE, dtype=torch.int64), tmp_path / "m.onnx")
    with pytest.raises(
        ValueError, match=r"was built for \(N, 1, 42, 42\) images, got \[2, 3, 42, 42\]"
    ) as caught:
        export_onnx(_st_cnn(), torch.rand(2, 3, 42, 42), tmp_path / "m.onnx")
    assert "\n" not in str(caught.value).strip() and not (tmp_path / "m.onnx").exists()


def test_onnx_differences_takes_inputs_that_require_grad_and_keeps_the_models_mode(exported) -> None:
    model, path = exported
    model.train()
    try:
        inputs = torch.rand(2, *SIZE, requires_grad=True)
        assert max(onnx_differences(model, path, inputs).values()) < 1e-4
        assert model.training
    finally:
        model.eval()
    with pytest.raises(ValueError, match=r"inputs must hold at least one image, got shape \[0, 1, 42, 42\]"):
        onnx_differences(model, path, torch.rand(0, *SIZE))
