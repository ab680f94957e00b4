"""Bad input to the command line: one line on stderr and exit status 1, never a traceback.

None of these needs the real data: each fails before any image is read.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from stnkit import cli

NO_DATA = "no-data-here"  # a data root that does not exist: a test that reads data fails loudly


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit status and stderr of ``stnkit argv``; stderr must be one line without a traceback."""
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return status, err


# A small ST-FCN for MNIST: the checkpoint these tests spoil or hand to commands that fail early.
ST_FCN_KWARGS = {"in_channels": 1, "num_classes": 10, "image_size": [28, 28], "hidden": [8]}


@pytest.fixture
def st_fcn_checkpoint(untrained_checkpoint: Callable[..., Path]) -> Callable[..., Path]:
    """Writes a valid untrained ST-FCN checkpoint at a path (``fields=`` replaces some of its fields)."""
    return functools.partial(untrained_checkpoint, name="st-fcn-affine", build_kwargs=ST_FCN_KWARGS)


@pytest.mark.parametrize(
    "model_kwargs, message",
    [('{"foo": 1}', "foo"), ('{"hidden": "abc"}', "hidden")],
    ids=["unknown-argument", "wrong-type"],
)
def test_train_refuses_model_kwargs_the_builder_cannot_take(
    model_kwargs: str, message: str, tmp_path: Path, capsys
) -> None:
    argv = ["train", "--model", "st-cnn-affine", "--model-kwargs", model_kwargs, "--no-progress"]
    status, err = _run([*argv, "--out", str(tmp_path / "r"), "--data-root", NO_DATA], capsys)
    assert status == cli.EXIT_ERROR
    assert message in err and "st-cnn-affine" in err
    assert not (tmp_path / "r").exists()  # refused before anything was written


@pytest.mark.parametrize(
    "override, message",
    [
        ({"model_kwargs": [1, 2]}, "model_kwargs"),
        ({"model_kwargs": {"foo": 1}}, "foo"),
        ({"model_kwargs": {"hidden": "abc"}}, "hidden"),
        ({"model_name": 7}, "model_name"),
        ({"model_name": "no-such-model"}, "unknown model"),
        ({"model": "not weights"}, "weights"),
        (
            {"config": {"dataset": 5, "model": "st-fcn-affine"}},
            "must name its dataset (a non-empty str), got int 5",
        ),
        (
            {"model": {"stn.head.bias": torch.full((6,), float("nan"))}},
            "'stn.head.bias' of 'model' has 6 non-finite",
        ),
    ],
    ids=[
        "kwargs-list",
        "kwargs-unknown",
        "kwargs-type",
        "name-int",
        "name-unknown",
        "weights-str",
        "dataset-int",
        "weights-nan",
    ],
)
@pytest.mark.parametrize("command", ["eval", "show", "export"])
def test_malformed_checkpoint_fields(
    command: str, override: dict[str, Any], message: str, tmp_path: Path, capsys, st_fcn_checkpoint
) -> None:
    ckpt = str(st_fcn_checkpoint(tmp_path / "bad.pt", fields=override))
    extra = {"eval": ["--data-root", NO_DATA], "show": ["--data-root", NO_DATA]}
    extra["export"] = ["--onnx", str(tmp_path / "m.onnx")]
    status, err = _run([command, ckpt, *extra[command]], capsys)
    assert status == cli.EXIT_ERROR
    assert message in err and "bad.pt" in err


def test_train_into_a_path_below_a_file(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "FILE"
    blocker.write_text("a file, not a folder")
    out = blocker / "sub"
    argv = ["train", "--model", "st-fcn-affine", "--no-progress", "--data-root", NO_DATA]
    status, err = _run([*argv, "--out", str(out)], capsys)
    assert status == cli.EXIT_ERROR
    assert str(out) in err and "Not a directory" in err


def test_show_into_a_path_below_a_file(tmp_path: Path, capsys, st_fcn_checkpoint) -> None:
    ckpt = str(st_fcn_checkpoint(tmp_path / "ok.pt"))
    blocker = tmp_path / "FILE"
    blocker.write_text("a file, not a folder")
    status, err = _run(["show", ckpt, "--out", str(blocker / "pics"), "--data-root", NO_DATA], capsys)
    assert status == cli.EXIT_ERROR
    assert str(blocker / "pics") in err and "Not a directory" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["show", "{ckpt}", "--out", "{file}", "--data-root", NO_DATA], "--out {file} exists and is not a folder"),
        (["compare", "{ckpt}", "{ckpt}", "--out", "{file}"], "--out {file} exists and is not a folder"),
        (["train", "--model", "st-fcn-affine", "--no-progress", "--data-root", NO_DATA, "--out", "{file}"],
         "--out {file} exists and is not a folder"),
        (["eval", "{ckpt}", "--per-class", "{dir}", "--data-root", NO_DATA], "--per-class {dir} is a folder"),
        (["eval", "{ckpt}", "--confusion", "{dir}", "--data-root", NO_DATA], "--confusion {dir} is a folder"),
        (["eval", "{ckpt}", "--confusion", "{file}/c.png", "--data-root", NO_DATA], "{file} exists and is not a folder"),
        (["export", "{ckpt}", "--onnx", "{dir}"], "--onnx {dir} is a folder"),
        (["export", "{ckpt}", "--safetensors", "{dir}"], "--safetensors {dir} is a folder"),
        (["reproduce", "--report", "{dir}", "--out", "{dir}"], "--report {dir} is a folder"),
    ],
    ids=["show-out-file", "compare-out-file", "train-out-file", "per-class-dir", "confusion-dir", "confusion-below-file",
         "onnx-dir", "safetensors-dir", "report-dir"],
)  # fmt: skip
def test_an_output_path_of_the_wrong_kind_is_named_in_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys, st_fcn_checkpoint
) -> None:
    paths = {"ckpt": str(st_fcn_checkpoint(tmp_path / "ok.pt")), "file": str(tmp_path / "FILE")}
    paths["dir"] = str(tmp_path / "DIR")
    (tmp_path / "FILE").write_text("a file, not a folder")
    (tmp_path / "DIR").mkdir()
    status, err = _run([arg.format(**paths) for arg in argv], capsys)
    assert status == cli.EXIT_ERROR
    assert message.format(**paths) in err
    assert ".tmp" not in err  # never the name of a temporary file


def test_atomic_writes_name_the_file_not_their_temporary_one(tmp_path: Path) -> None:
    from stnkit.files import atomic_write_text

    (tmp_path / "DIR").mkdir()
    with pytest.raises(
        IsADirectoryError, match=f"cannot write {tmp_path / 'DIR'}: it is a folder, not a file"
    ):
        atomic_write_text(tmp_path / "DIR", "x")
    (tmp_path / "FILE").write_text("x")
    with pytest.raises(
        OSError, match=f"cannot write {tmp_path / 'FILE' / 'a.txt'}: {tmp_path / 'FILE'} is a file"
    ):
        atomic_write_text(tmp_path / "FILE" / "a.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DIR", "FILE"]  # no temporary file left


def test_any_os_error_is_one_line_naming_the_path(
    tmp_path: Path, capsys, monkeypatch, st_fcn_checkpoint
) -> None:
    """Not only FileNotFoundError: e.g. a full disk while writing the ONNX file."""
    import stnkit.cli.export as export_command

    def disk_full(*args: Any, **kwargs: Any) -> Path:
        raise OSError(28, "No space left on device", str(tmp_path / "m.onnx"))

    monkeypatch.setattr(export_command, "export_onnx", disk_full)
    ckpt = str(st_fcn_checkpoint(tmp_path / "ok.pt"))
    status, err = _run(["export", ckpt, "--onnx", str(tmp_path / "m.onnx")], capsys)
    assert status == cli.EXIT_ERROR
    assert "m.onnx" in err and "No space left on device" in err


@pytest.mark.parametrize("module", ["onnx", "onnxscript", "onnxruntime"])
def test_export_without_the_onnx_extra_says_what_to_install(
    module: str, tmp_path: Path, capsys, monkeypatch, st_fcn_checkpoint
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    ckpt = str(st_fcn_checkpoint(tmp_path / "ok.pt"))
    status, err = _run(["export", ckpt, "--onnx", str(tmp_path / "m.onnx")], capsys)
    assert status == cli.EXIT_ERROR
    assert "pip install 'stnkit[onnx]'" in err and module in err


@pytest.mark.parametrize("spelling", ["--data-root", "--data-dir"])
@pytest.mark.parametrize(
    "argv",
    [["train"], ["eval", "x.pt"], ["show", "x.pt"], ["data", "show", "rts", "--out", "x.png"]],
    ids=["train", "eval", "show", "data-show"],
)
def test_every_command_that_reads_data_takes_both_spellings(argv: list[str], spelling: str) -> None:
    args = cli.build_parser().parse_args([*argv, spelling, "DIR"])
    assert "DIR" in (getattr(args, "data_root", None), getattr(args, "data_dir", None))


def test_missing_data_message_names_the_flag_that_exists(tmp_path: Path, capsys, st_fcn_checkpoint) -> None:
    ckpt = str(st_fcn_checkpoint(tmp_path / "ok.pt"))
    status, err = _run(["eval", ckpt, "--data-root", str(tmp_path / "empty")], capsys)
    assert status == cli.EXIT_ERROR
    assert "--data-root" in err and "--data-dir" not in err


def test_a_closed_pipe_is_quiet(tmp_path: Path, capsys, monkeypatch) -> None:
    """`stnkit models | head -1`: the reader leaves; no 'Broken pipe' message."""

    class ClosedPipe:
        def __init__(self) -> None:
            self.file = open(tmp_path / "stdout", "w")  # noqa: SIM115  (a real fd for dup2)

        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            pass

        def fileno(self) -> int:
            return self.file.fileno()

    pipe = ClosedPipe()
    monkeypatch.setattr(sys, "stdout", pipe)
    try:
        assert cli.main(["models"]) == cli.EXIT_ERROR
    finally:
        pipe.file.close()
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("command", ["show", "eval"])
def test_a_dataset_the_model_was_not_built_for_is_refused(
    command: str, tmp_path: Path, capsys, st_fcn_checkpoint
) -> None:
    # A 1-channel MNIST model given the 2-channel addition data: refused before any tensor meets the model.
    ckpt = st_fcn_checkpoint(tmp_path / "checkpoint.pt")
    argv = [command, str(ckpt), "--dataset", "mnist-add", "--data-root", NO_DATA]
    status, err = _run([*argv, "--out", str(tmp_path / "pics")] if command == "show" else argv, capsys)
    assert status == cli.EXIT_ERROR
    assert "dataset 'mnist-add' has in_channels=2, the model was built for 1" in err


def test_an_unknown_model_is_one_line_but_a_bugs_key_error_keeps_its_traceback(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """Only the registry's failed look-up is a user error; any other KeyError is a bug."""
    status, err = _run(["train", "--model", "no-such-model", "--data-root", NO_DATA], capsys)
    assert status == cli.EXIT_ERROR
    assert "unknown model 'no-such-model'; known models:" in err

    def broken_command(args: Any) -> int:
        return {}["missing"]  # type: ignore[no-any-return]

    parser = cli.build_parser()
    args = parser.parse_args(["models"])
    monkeypatch.setattr(args, "func", broken_command)
    monkeypatch.setattr(cli, "build_parser", lambda: _FixedParser(args))
    with pytest.raises(KeyError, match="missing"):
        cli.main(["models"])


class _FixedParser:
    """A stand-in parser that returns the given arguments."""

    def __init__(self, args: Any) -> None:
        self.args = args

    def parse_args(self, argv: list[str]) -> Any:
        return self.args


def test_an_int_image_size_is_a_square_for_the_dataset_check() -> None:
    from stnkit.cli.common import CliError, check_dataset_fits

    check_dataset_fits("rts", {"image_size": 42})  # builders read one int as a square
    with pytest.raises(
        CliError, match=r"dataset 'rts' has image_size=\[42, 42\], --model-kwargs asks for 28"
    ):
        check_dataset_fits("rts", {"image_size": 28}, source="--model-kwargs asks for")


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "{ckpt}", "--out", "{ckpt}", "--data-root", NO_DATA],
        ["eval", "{ckpt}", "--per-class", "{same}", "--data-root", NO_DATA],
        ["eval", "{other}", "{ckpt}", "--confusion", "{ckpt}", "--data-root", NO_DATA],
        ["export", "{ckpt}", "--onnx", "{same}"],
        ["export", "{ckpt}", "--safetensors", "{ckpt}"],
    ],
    ids=["eval-out", "eval-per-class-other-spelling", "ensemble-confusion", "onnx", "safetensors"],
)
def test_an_output_file_that_is_an_input_checkpoint_is_refused_and_the_checkpoint_kept(
    argv: list[str], tmp_path: Path, capsys, st_fcn_checkpoint
) -> None:
    ckpt = st_fcn_checkpoint(tmp_path / "ok.pt")
    other = st_fcn_checkpoint(tmp_path / "other.pt")
    before = ckpt.read_bytes()
    # The same file spelled through a link and a relative part.
    (tmp_path / "link").symlink_to(tmp_path)
    paths = {"ckpt": str(ckpt), "other": str(other), "same": str(tmp_path / "link" / "." / "ok.pt")}
    status, err = _run([arg.format(**paths) for arg in argv], capsys)
    assert status == cli.EXIT_ERROR
    assert "which this command reads; give another file" in err
    assert ckpt.read_bytes() == before


def test_a_confusion_picture_of_a_format_matplotlib_cannot_write_is_refused_before_the_work(
    tmp_path: Path, capsys, st_fcn_checkpoint
) -> None:
    ckpt = str(st_fcn_checkpoint(tmp_path / "ok.pt"))
    # NO_DATA: had the check come after the evaluation, the message would be about the data.
    status, err = _run(["eval", ckpt, "--confusion", str(tmp_path / "c.txt"), "--data-root", NO_DATA], capsys)
    assert status == cli.EXIT_ERROR
    assert f"--confusion {tmp_path / 'c.txt'}: .txt is not a picture format (" in err and "png" in err


def test_a_report_from_a_folder_without_result_files_is_refused_and_the_page_kept(
    tmp_path: Path, capsys
) -> None:
    page = tmp_path / "paper-results.md"
    page.write_text("the real report")
    (tmp_path / "empty").mkdir()
    argv = ["reproduce", "--report", str(page), "--out", str(tmp_path / "empty"), "--runs", str(tmp_path)]
    status, err = _run(argv, capsys)
    assert status == cli.EXIT_ERROR
    assert f"--out {tmp_path / 'empty'}: no result files in it" in err
    assert page.read_text() == "the real report"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seed", "1180591620717411303424"], "seed must be in [0, 2**32), got 1180591620717411303424"),
        (["--seed", "-1"], "seed must be in [0, 2**32), got -1"),
        (["--snapshot-images", "100000"], "snapshot_images must be in [1, 64], got 100000"),
    ],
    ids=["seed-huge", "seed-negative", "snapshot-images-huge"],
)
def test_train_values_out_of_range_fail_before_the_work(
    argv: list[str], message: str, tmp_path: Path, capsys
) -> None:
    base = ["train", "--model", "st-fcn-affine", "--no-progress", "--data-root", NO_DATA]
    status, err = _run([*base, *argv, "--out", str(tmp_path / "r")], capsys)
    assert status == cli.EXIT_ERROR and message in err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "command, hint",
    [
        (["train", "--model", "st-fcn-affine"], "; the same command with --resume continues from the last finished epoch"),
        (["reproduce", "tc", "--dry-run"], "; the same command continues (finished cells are skipped, the killed one resumes)"),
        (["models"], ""),
    ],
    ids=["train", "reproduce", "other"],
)  # fmt: skip
def test_ctrl_c_is_one_line_saying_how_to_continue(
    command: list[str], hint: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    import importlib

    def interrupted(args: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(importlib.import_module(f"stnkit.cli.{command[0]}"), f"cmd_{command[0]}", interrupted)
    status, err = _run(command, capsys)
    assert status == cli.EXIT_INTERRUPTED == 130
    assert err == f"stnkit {command[0]}: interrupted{hint}\n"


def test_resume_names_the_checkpoint_whose_saved_config_is_bad(
    tmp_path: Path, capsys, st_fcn_checkpoint
) -> None:
    run = tmp_path / "run"
    run.mkdir()
    config = {"dataset": "mnist", "model": "st-fcn-affine", "epochs": -5}
    st_fcn_checkpoint(run / "checkpoint.pt", fields={"config": config})
    argv = ["train", "--resume", "--out", str(run), "--epochs", "1", "--no-progress", "--data-root", NO_DATA]
    status, err = _run(argv, capsys)
    assert status == cli.EXIT_ERROR
    assert (
        f"--resume: the config saved in {run / 'checkpoint.pt'} is not valid: epochs must be >= 1, got -5"
        in err
    )


@pytest.mark.parametrize("flag", ["--runs", "--out"])
def test_reproduce_refuses_an_unwritable_folder_before_the_first_cell(
    flag: str, tmp_path: Path, capsys
) -> None:
    blocker = tmp_path / "FILE"
    blocker.write_text("a file, not a folder")
    folders = {
        "--runs": str(tmp_path / "runs"),
        "--out": str(tmp_path / "results"),
        flag: str(blocker / "sub"),
    }
    argv = ["reproduce", "tc", "--cells", "tc-fcn", "--seeds", "0", "--data-root", NO_DATA]
    status, err = _run([*argv, *(x for pair in folders.items() for x in pair)], capsys)
    assert status == cli.EXIT_ERROR
    assert f"{flag} {blocker / 'sub'}" in err and "rerun" not in err
