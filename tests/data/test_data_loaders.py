from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from PIL import Image

from stnkit.data import dataset_info, list_datasets, make_loader
from stnkit.data.commands import add_data_subcommands

NAMES = ["mnist", "r", "rts", "p", "e", "tc", "mnist-add", "gtsrb", "gtsrb48"]
# gtsrb48 reads the official archives' layout, which the shared data folder does not hold; it is
# tested on a tiny synthetic layout (test_gtsrb48_*).
SHARED_NAMES = [name for name in NAMES if name != "gtsrb48"]


def collect(loader: object) -> tuple[torch.Tensor, torch.Tensor]:
    batches = list(loader)  # type: ignore[call-overload]
    return torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])


def test_registry() -> None:
    assert list_datasets() == NAMES
    info = dataset_info("mnist-add")
    assert (info.num_classes, info.in_channels, info.image_size) == (19, 2, (42, 42))
    assert dataset_info("GTSRB").num_classes == 43
    with pytest.raises(ValueError, match="valid: \\['mnist', 'r'"):
        dataset_info("cluttered")
    with pytest.raises(ValueError, match="valid"):
        make_loader("svhn", split="train", batch_size=4)


@pytest.mark.parametrize("name", SHARED_NAMES)
def test_every_dataset_yields_its_info(shared_gtsrb: Path, name: str) -> None:
    info = dataset_info(name)
    loader = make_loader(name, split="train", batch_size=5, limit=12)
    assert len(loader) == 3 and loader.num_samples == 12
    images, labels = next(iter(loader))
    assert images.shape == (5, info.in_channels, *info.image_size)
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert images.min() >= 0 and images.max() <= 1
    assert labels.min() >= 0 and labels.max() < info.num_classes


def test_bad_arguments(shared_data: Path) -> None:
    for kwargs in (
        {"split": "val", "batch_size": 4},
        {"split": "train", "batch_size": 0},
        {"split": "train", "batch_size": 4, "rank": 2, "world_size": 2},
        {"split": "train", "batch_size": 4, "limit": 0},
    ):
        with pytest.raises(ValueError):
            make_loader("rts", **kwargs)  # type: ignore[arg-type]


def test_workers_give_identical_batches(shared_data: Path) -> None:
    kwargs = {"split": "train", "batch_size": 16, "limit": 64, "seed": 3}
    serial = make_loader("tc", num_workers=0, **kwargs)  # type: ignore[arg-type]
    parallel = make_loader("tc", num_workers=2, **kwargs)  # type: ignore[arg-type]
    for epoch in (0, 1):
        serial.set_epoch(epoch)
        parallel.set_epoch(epoch)
        a, b = collect(serial), collect(parallel)
        torch.testing.assert_close(a[0], b[0], atol=0, rtol=0)
        assert torch.equal(a[1], b[1])


def test_fresh_every_epoch_and_reproducible(shared_data: Path) -> None:
    loader = make_loader("rts", split="train", batch_size=32, limit=32, shuffle=False)
    first, second = collect(loader), collect(loader)  # epoch advances by itself
    assert loader.epoch == 2
    assert torch.equal(first[1], second[1])  # same digits (no shuffle) ...
    assert not torch.equal(first[0], second[0])  # ... distorted afresh
    loader.set_epoch(0)
    assert torch.equal(collect(loader)[0], first[0])  # epoch 0 again, bit for bit
    other_seed = make_loader("rts", split="train", batch_size=32, limit=32, shuffle=False, seed=1)
    assert not torch.equal(collect(other_seed)[0], first[0])


def test_train_order_shuffles_per_epoch(shared_data: Path) -> None:
    loader = make_loader("mnist", split="train", batch_size=50, limit=200)
    first, second = collect(loader)[1], collect(loader)[1]
    assert not torch.equal(first, second)
    assert torch.equal(first.sort().values, second.sort().values)


def test_test_split_is_fixed(shared_data: Path) -> None:
    loader = make_loader("e", split="test", batch_size=20, limit=40)
    a = collect(loader)
    loader.set_epoch(7)
    b = collect(loader)
    assert loader.epoch == 7
    assert torch.equal(a[0], b[0]) and a[1][:5].tolist() == [7, 2, 1, 0, 4]


def test_mnist_add_labels_are_sums(shared_data: Path) -> None:
    loader = make_loader("mnist-add", split="test", batch_size=64, limit=64)
    images, labels = next(iter(loader))
    dataset = loader.dataset
    partner = dataset.params()["partner"][:64]
    expected = dataset.labels[:64] + dataset.labels[partner]
    assert torch.equal(labels, expected)
    assert labels.max() <= 18 and len(labels.unique()) > 5
    assert (images[:, 0].sum((1, 2)) > 0).all() and (images[:, 1].sum((1, 2)) > 0).all()


def test_ranks_partition_the_data(shared_data: Path) -> None:
    kwargs = {"batch_size": 8, "limit": 50}
    train = [
        make_loader("mnist", split="train", rank=r, world_size=3, **kwargs)  # type: ignore[arg-type]
        for r in range(3)
    ]
    index_sets = [set(loader.dataset.indices().tolist()) for loader in train]
    assert [len(s) for s in index_sets] == [16, 16, 16]  # equal: DDP steps in lockstep
    assert not (index_sets[0] & index_sets[1]) and not (index_sets[1] & index_sets[2])
    assert len({len(loader) for loader in train}) == 1
    test = [
        make_loader("mnist", split="test", rank=r, world_size=3, **kwargs)  # type: ignore[arg-type]
        for r in range(3)
    ]
    seen = sorted(i for loader in test for i in loader.dataset.indices().tolist())
    assert seen == list(range(50))  # every test image exactly once


def test_drop_last(shared_data: Path) -> None:
    loader = make_loader("r", split="train", batch_size=16, limit=40, drop_last=True)
    assert len(loader) == 2 and len(list(loader)) == 2
    assert len(make_loader("r", split="train", batch_size=16, limit=40)) == 3


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stnkit")
    add_data_subcommands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


def test_data_show_writes_png(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "pics" / "rts.png"
    assert run_cli(["data", "show", "rts", "--out", str(out), "--num", "12", "--ncols", "4"]) == 0
    with Image.open(out) as picture:
        assert picture.format == "PNG"
        assert picture.size == (2 * (4 * 44 + 2), 2 * (3 * 44 + 2))
    assert [p.name for p in out.parent.iterdir()] == ["rts.png"]  # no temporary left


def test_data_show_bad_input(shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.png"
    assert run_cli(["data", "show", "rst", "--out", str(out)]) == 2
    assert "valid: ['mnist', 'r', 'rts'" in capsys.readouterr().err
    for option in ("--data-dir", "--data-root"):
        code = run_cli(["data", "show", "r", "--out", str(out), option, str(tmp_path / "no")])
        assert code == 1 and "not found" in capsys.readouterr().err
    assert not out.exists()
    (tmp_path / "DIR").mkdir()
    cases = [
        (["--num", "0"], "--num: must be an int >= 1, got 0"),
        (["--scale", "-2"], "--scale: must be an int >= 1, got -2"),
        (["--ncols", "0"], "--ncols: must be an int >= 1, got 0"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as exited:
            run_cli(["data", "show", "r", "--out", str(out), *extra])
        assert exited.value.code == 2 and message in capsys.readouterr().err
    for target, message in [(tmp_path / "DIR", "is a folder"), (tmp_path / "x.jpgx", "must end in .png")]:
        assert run_cli(["data", "show", "r", "--out", str(target)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("stnkit data show: error: --out") and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DIR"]


def test_dataset_pickles_for_spawned_workers(shared_data: Path) -> None:
    import pickle

    loader = make_loader("tc", split="test", batch_size=8, limit=8)
    clone = pickle.loads(pickle.dumps(loader.dataset))
    torch.testing.assert_close(clone[0][0], loader.dataset[0][0], atol=0, rtol=0)


def test_validation_split_is_the_held_out_end_of_train(shared_data: Path) -> None:
    train = make_loader("mnist", split="train", batch_size=100, val_size=10_000, shuffle=False)
    val = make_loader("mnist", split="val", batch_size=100, val_size=10_000)
    assert train.num_samples == 50_000 and val.num_samples == 10_000
    full = make_loader("mnist", split="train", batch_size=100, shuffle=False)
    assert torch.equal(full.dataset.images[50_000:], val.dataset.images)
    assert torch.equal(full.dataset.images[:50_000], train.dataset.images)
    # Distorted validation images are fixed (the same every epoch and every call) and differ from test's.
    rts_val = make_loader("rts", split="val", batch_size=64, val_size=1000, limit=64)
    first, _ = next(iter(rts_val))
    rts_val.set_epoch(5)
    assert torch.equal(next(iter(rts_val))[0], first)


@pytest.mark.parametrize(
    ("name", "split", "val_size", "match"),
    [
        ("mnist", "val", 0, "split 'val' needs val_size > 0"),
        ("mnist", "train", -1, "val_size must be >= 0"),
        ("mnist", "train", 60_000, "val_size must be below the 60000 training images"),
        ("gtsrb", "train", 39_209, "val_size must be below the 39209 training images"),
    ],
)
def test_bad_validation_sizes(shared_data: Path, name: str, split: str, val_size: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_loader(name, split=split, batch_size=8, val_size=val_size)


# --- GTSRB: 48x48 from the archives' layout, validation by whole tracks -------------------------


def test_gtsrb48_yields_48x48_from_the_original_layout(tmp_path: Path, tiny_gtsrb) -> None:
    from stnkit.data import load_gtsrb_original

    counts = tiny_gtsrb(tmp_path, classes=3, per_class=2)
    info = dataset_info("gtsrb48")
    assert (info.num_classes, info.in_channels, info.image_size) == (43, 3, (48, 48))
    for split in ("train", "test"):
        loader = make_loader("gtsrb48", split=split, batch_size=4, root=tmp_path, shuffle=False)
        images, labels = collect(loader)
        assert images.shape == (counts[split], 3, 48, 48) and images.dtype == torch.float32
        source = load_gtsrb_original(tmp_path, split=split, size=48)
        assert torch.equal(images, source.images.float() / 255) and torch.equal(labels, source.labels)


def test_gtsrb48_refuses_the_32x32_copy(shared_gtsrb: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no original layout of the official archives") as info:
        make_loader("gtsrb48", split="test", batch_size=8, root=shared_gtsrb)
    assert "\n" not in str(info.value)


def test_gtsrb48_validation_is_whole_tracks(tmp_path: Path, tiny_gtsrb) -> None:
    tiny_gtsrb(tmp_path, classes=3, per_class=4)  # image k of each class is its track k
    kwargs = {"batch_size": 5, "root": tmp_path, "val_size": 3, "shuffle": False}
    val = make_loader("gtsrb48", split="val", **kwargs)  # type: ignore[arg-type]
    train = make_loader("gtsrb48", split="train", **kwargs)  # type: ignore[arg-type]
    whole = make_loader("gtsrb48", split="train", batch_size=5, root=tmp_path, shuffle=False)
    (val_images, val_labels), (train_images, _), (all_images, _) = map(collect, (val, train, whole))
    # 3 of 12 images: the last track (k = 3) of each class.
    assert torch.equal(val_images, all_images[[3, 7, 11]]) and val_labels.tolist() == [0, 1, 2]
    assert torch.equal(train_images, all_images[[0, 1, 2, 4, 5, 6, 8, 9, 10]])


def test_gtsrb_validation_split_on_real_tracks(shared_gtsrb: Path) -> None:
    from stnkit.data import load_gtsrb
    from stnkit.data.gtsrb import holdout_tracks

    kwargs = {"batch_size": 512, "val_size": 4000, "shuffle": False}
    val = make_loader("gtsrb", split="val", **kwargs)  # type: ignore[arg-type]
    train = make_loader("gtsrb", split="train", **kwargs)  # type: ignore[arg-type]
    assert val.num_samples == 4020 and train.num_samples == 39_209 - 4020
    source = load_gtsrb(shared_gtsrb, split="train")
    held = holdout_tracks(source.labels, source.track_ids, 4000)
    assert torch.equal(val.dataset.images, source.images[held])
    assert torch.equal(val.dataset.labels, source.labels[held])
    assert torch.equal(train.dataset.images, source.images[~held])
    # Fixed: the validation batches are the same every epoch.
    first = next(iter(val))[0]
    val.set_epoch(3)
    assert torch.equal(next(iter(val))[0], first)
