"""Downloads against a local HTTP server on 127.0.0.1: nothing here touches the internet."""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stnkit.data import (
    ChecksumError,
    DownloadError,
    RemoteFile,
    download_dataset,
    download_file,
    load_gtsrb,
)
from stnkit.data.download import extract_zip

PAYLOAD = os.urandom(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_download_verifies_and_renames(http_server: Any, tmp_path: Path) -> None:
    http_server.files["/f.bin"] = PAYLOAD
    dest = download_file(f"{http_server.url}/f.bin", tmp_path / "f.bin", sha256=SHA)
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(tmp_path) == ["f.bin"]
    # Present and verified: not fetched again.
    download_file(f"{http_server.url}/f.bin", dest, sha256=SHA)
    assert len(http_server.requests) == 1


def test_md5_is_accepted(http_server: Any, tmp_path: Path) -> None:
    http_server.files["/f.bin"] = PAYLOAD
    md5 = hashlib.md5(PAYLOAD).hexdigest()
    assert download_file(f"{http_server.url}/f.bin", tmp_path / "f", md5=md5).is_file()


def test_interrupted_download_resumes_on_next_run(http_server: Any, tmp_path: Path) -> None:
    http_server.files["/f.bin"] = PAYLOAD
    http_server.cut_after["/f.bin"] = 100_000
    http_server.cuts_left["/f.bin"] = 1
    dest = tmp_path / "f.bin"
    with pytest.raises(DownloadError, match="run again to resume"):
        download_file(f"{http_server.url}/f.bin", dest, sha256=SHA, retries=0)
    # Never looks complete: only the .part, holding what arrived.
    assert not dest.exists()
    assert (tmp_path / "f.bin.part").stat().st_size == 100_000
    download_file(f"{http_server.url}/f.bin", dest, sha256=SHA, retries=0)
    assert dest.read_bytes() == PAYLOAD
    assert http_server.requests[-1] == ("/f.bin", "bytes=100000-")
    assert leftovers(tmp_path) == ["f.bin"]


def test_interrupted_download_retries_within_one_call(http_server: Any, tmp_path: Path) -> None:
    http_server.files["/f.bin"] = PAYLOAD
    http_server.cut_after["/f.bin"] = 50_000
    http_server.cuts_left["/f.bin"] = 2  # two drops, then it works
    dest = download_file(f"{http_server.url}/f.bin", tmp_path / "f.bin", sha256=SHA, retries=3)
    assert dest.read_bytes() == PAYLOAD
    assert [r for _, r in http_server.requests] == [None, "bytes=50000-", "bytes=100000-"]


def test_server_ignoring_range_restarts_cleanly(http_server: Any, tmp_path: Path) -> None:
    http_server.files["/f.bin"] = PAYLOAD
    http_server.ignore_range = True
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    dest = download_file(f"{http_server.url}/f.bin", tmp_path / "f.bin", sha256=SHA)
    assert dest.read_bytes() == PAYLOAD


def test_part_already_complete(http_server: Any, tmp_path: Path) -> None:
    http_server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)  # server answers 416
    dest = download_file(f"{http_server.url}/f.bin", tmp_path / "f.bin", sha256=SHA)
    assert dest.read_bytes() == PAYLOAD


def test_corrupted_download_leaves_nothing(http_server: Any, tmp_path: Path) -> None:
    corrupted = bytearray(PAYLOAD)
    corrupted[1234] ^= 1
    http_server.files["/f.bin"] = bytes(corrupted)
    with pytest.raises(ChecksumError, match="corrupt: sha256") as info:
        download_file(f"{http_server.url}/f.bin", tmp_path / "f.bin", sha256=SHA)
    assert SHA in str(info.value)
    assert leftovers(tmp_path) == []


def test_existing_wrong_file_is_reported_not_replaced(http_server: Any, tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"something else")
    with pytest.raises(ChecksumError, match="existing"):
        download_file(f"{http_server.url}/f.bin", tmp_path / "f.bin", sha256=SHA)
    assert (tmp_path / "f.bin").read_bytes() == b"something else"
    assert http_server.requests == []


def test_mirror_fallback_and_all_failing(http_server: Any, tmp_path: Path) -> None:
    http_server.files["/good/f.bin"] = PAYLOAD
    urls = [f"{http_server.url}/missing/f.bin", f"{http_server.url}/good/f.bin"]
    assert download_file(urls, tmp_path / "f.bin", sha256=SHA).read_bytes() == PAYLOAD
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(urls[:1], tmp_path / "g.bin", sha256=SHA, retries=0)
    assert not (tmp_path / "g.bin").exists() and not (tmp_path / "g.bin.part").exists()


def _zip_of(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


def test_gtsrb_download_and_unpack(
    http_server: Any, tmp_path: Path, tiny_gtsrb: Callable[..., dict[str, int]]
) -> None:
    # Three archives laid out like the official ones: train, test images, test labels.
    src = tmp_path / "src"
    tiny_gtsrb(src)
    labels_csv = src / "GTSRB" / "Final_Test" / "GT-final_test.csv"
    gt_zip_dir = tmp_path / "gt"
    gt_zip_dir.mkdir()
    labels_csv.rename(gt_zip_dir / "GT-final_test.csv")
    train_dir, test_dir = tmp_path / "train", tmp_path / "test"
    (train_dir / "GTSRB").mkdir(parents=True)
    (test_dir / "GTSRB").mkdir(parents=True)
    (src / "GTSRB" / "Final_Training").rename(train_dir / "GTSRB" / "Final_Training")
    (src / "GTSRB" / "Final_Test").rename(test_dir / "GTSRB" / "Final_Test")
    files = []
    for name, folder in (("train.zip", train_dir), ("test.zip", test_dir), ("gt.zip", gt_zip_dir)):
        data = _zip_of(folder)
        http_server.files[f"/{name}"] = data
        files.append(RemoteFile(name, (), sha256=hashlib.sha256(data).hexdigest(), extract=True))
    root = tmp_path / "root"
    folder = download_dataset("gtsrb", root, base_url=http_server.url, files=files, verbose=False)
    assert folder == root / "gtsrb"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".gt.zip.done",
        ".test.zip.done",
        ".train.zip.done",
        "GT-final_test.csv",
        "GTSRB",
    ]
    assert load_gtsrb(root, split="train").labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert len(load_gtsrb(root, split="test").labels) == 6
    # A second run is a no-op: no more requests.
    count = len(http_server.requests)
    download_dataset("gtsrb", root, base_url=http_server.url, files=files, verbose=False)
    assert len(http_server.requests) == count


def test_zip_with_bad_crc_or_escaping_member(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("GTSRB/a.txt", b"hello world, hello world")
    corrupt = buffer.getvalue().replace(b"hello world, hello world", b"hello w0rld, hello world")
    (tmp_path / "bad.zip").write_bytes(corrupt)
    (tmp_path / "out").mkdir()
    with pytest.raises(ChecksumError, match="CRC"):
        extract_zip(tmp_path / "bad.zip", tmp_path / "out")
    assert leftovers(tmp_path / "out") == []  # nothing half-unpacked
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    (tmp_path / "evil.zip").write_bytes(buffer.getvalue())
    with pytest.raises(DownloadError, match="escapes"):
        extract_zip(tmp_path / "evil.zip", tmp_path / "out")
    assert not (tmp_path / "evil.txt").exists() and leftovers(tmp_path / "out") == []
    (tmp_path / "notzip.zip").write_bytes(b"nope")
    with pytest.raises(ChecksumError, match="not a valid zip"):
        extract_zip(tmp_path / "notzip.zip", tmp_path / "out")


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"valid: \['gtsrb', 'mnist'\]"):
        download_dataset("svhn", tmp_path)


def _cli(argv: list[str]) -> int:
    import argparse

    from stnkit.data.commands import add_data_subcommands

    parser = argparse.ArgumentParser(prog="stnkit")
    add_data_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_cli_download_mnist_from_local_mirror(http_server: Any, shared_data: Path, tmp_path: Path) -> None:
    from stnkit.data import load_mnist

    for path in (shared_data / "mnist").glob("*.gz"):
        http_server.files[f"/mirror/{path.name}"] = path.read_bytes()
    # Interrupt one file once: the default retries resume it within the same command.
    http_server.cut_after["/mirror/t10k-images-idx3-ubyte.gz"] = 500_000
    http_server.cuts_left["/mirror/t10k-images-idx3-ubyte.gz"] = 1
    root = tmp_path / "root"
    argv = ["data", "download", "mnist", "--to", str(root), "--base-url", http_server.url + "/mirror"]
    assert _cli(argv) == 0
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(
        p.name for p in (shared_data / "mnist").glob("*.gz")
    )
    assert load_mnist(root, split="test").labels[:3].tolist() == [7, 2, 1]


def test_cli_download_corrupt_mnist(
    http_server: Any, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = "t10k-labels-idx1-ubyte.gz"
    for path in (shared_data / "mnist").glob("*.gz"):
        http_server.files[f"/{path.name}"] = path.read_bytes()
    corrupted = bytearray(http_server.files[f"/{name}"])
    corrupted[-1] ^= 0xFF
    http_server.files[f"/{name}"] = bytes(corrupted)
    root = tmp_path / "root"
    code = _cli(["data", "download", "mnist", "--to", str(root), "--base-url", http_server.url])
    assert code == 1
    assert f"download of {name}" in capsys.readouterr().err
    assert not (root / "mnist" / name).exists()
    assert not (root / "mnist" / f"{name}.part").exists()
    assert _cli(["data", "download", "svhn", "--to", str(root)]) == 2
    assert capsys.readouterr().err.startswith("stnkit data download: error: cannot download 'svhn'")
    for flag, value, message in [
        ("--retries", "-1", "--retries: must be an int >= 0, got -1"),
        ("--timeout", "0", "--timeout: must be a number of seconds > 0, got 0"),
        ("--timeout", "nan", "--timeout: must be a number of seconds > 0, got nan"),
    ]:
        with pytest.raises(SystemExit) as exited:
            _cli(["data", "download", "mnist", "--to", str(root), flag, value])
        assert exited.value.code == 2 and message in capsys.readouterr().err
