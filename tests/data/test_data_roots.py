from __future__ import annotations

from pathlib import Path

import pytest

from stnkit.data import DataNotFoundError, load_mnist, resolve_data_root, run_data_root
from stnkit.data import roots as roots_module


def test_explicit_beats_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STNKIT_DATA", str(tmp_path / "env"))
    assert resolve_data_root(tmp_path / "explicit") == (tmp_path / "explicit").resolve()


def test_env_beats_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STNKIT_DATA", str(tmp_path / "env"))
    assert resolve_data_root() == (tmp_path / "env").resolve()
    assert resolve_data_root("") == (tmp_path / "env").resolve()  # "" means not given


def test_default_is_shared_data_beside_repo(shared_data: Path) -> None:
    assert resolve_data_root() == shared_data.resolve()


def test_default_falls_back_to_user_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(roots_module, "_default_candidates", lambda: [tmp_path / "absent"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert resolve_data_root() == tmp_path / "cache" / "stnkit"


def test_wrong_root_names_root_and_fix(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(tmp_path / "nowhere", split="test")
    message = str(info.value)
    assert "nowhere" in message and "given explicitly" in message
    assert "stnkit data download mnist" in message


def test_wrong_env_root_says_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STNKIT_DATA", str(tmp_path / "typo"))
    with pytest.raises(DataNotFoundError, match=r"\$STNKIT_DATA"):
        load_mnist(split="train")


def test_a_runs_recorded_root_is_used_while_it_exists_and_the_usual_order_after(tmp_path: Path) -> None:
    recorded = tmp_path / "trained-here"
    recorded.mkdir()
    assert run_data_root("/given", str(recorded)) == "/given"  # --data-root first
    assert run_data_root(None, str(recorded)) == str(recorded)
    assert run_data_root(None, None) is None
    recorded.rmdir()  # moved, or a checkpoint from another machine
    assert run_data_root(None, str(recorded)) is None  # $STNKIT_DATA, ../shared/data, ... decide
