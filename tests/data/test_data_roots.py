from __future__ import annotations

from pathlib import Path

import pytest

from stnkit.data import DataNotFoundError, load_mnist, resolve_data_root
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
