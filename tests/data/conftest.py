"""Shared fixtures of the data tests: the real data folder, tiny GTSRB layouts, a local server."""

from __future__ import annotations

import csv
import http.server
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# tests/data/conftest.py -> parents[2] is the repository root; the data sits beside it.
SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder (``../shared/data``); tests using it skip when it is absent."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_gtsrb(shared_data: Path) -> Path:
    if not (shared_data / "gtsrb" / "gtsrb32_test.npz").is_file():
        pytest.skip(f"GTSRB npz not found under {shared_data}")
    return shared_data


@pytest.fixture(autouse=True)
def _no_env_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not depend on the caller's $STNKIT_DATA."""
    monkeypatch.delenv("STNKIT_DATA", raising=False)


# --- a tiny GTSRB in the original layout --------------------------------------------------

CSV_HEADER = ["Filename", "Width", "Height", "Roi.X1", "Roi.Y1", "Roi.X2", "Roi.Y2", "ClassId"]


def sign_image(width: int, height: int, roi: tuple[int, int, int, int], colour: int) -> np.ndarray:
    """(H, W, 3) uint8: grey margin, a solid square of ``colour`` (red channel) in the ROI."""
    image = np.full((height, width, 3), 40, dtype=np.uint8)
    x1, y1, x2, y2 = roi
    image[y1:y2, x1:x2] = (colour, 0, 255 - colour)
    return image


def _write_csv(path: Path, rows: list[list[object]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=";", lineterminator="\r\n")  # as in the originals
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)


def write_tiny_gtsrb(base: Path, *, classes: int = 3, per_class: int = 2) -> dict[str, int]:
    """Write ``base/GTSRB/Final_Training`` and ``Final_Test`` with a few .ppm signs.

    Image ``k`` of class ``c`` is (30 + k) x (32 + c) pixels with a 5 px margin ROI; test images
    mirror the training ones. Returns the counts.
    """
    train = base / "GTSRB" / "Final_Training" / "Images"
    test = base / "GTSRB" / "Final_Test" / "Images"
    test.mkdir(parents=True)
    test_rows: list[list[object]] = []
    for c in range(classes):
        folder = train / f"{c:05d}"
        folder.mkdir(parents=True)
        rows: list[list[object]] = []
        for k in range(per_class):
            width, height = 30 + k, 32 + c
            roi = (5, 5, width - 5, height - 5)
            pixels = sign_image(width, height, roi, colour=60 * c + 10 * k)
            name = f"{k:05d}_{k:05d}.ppm"
            Image.fromarray(pixels).save(folder / name, format="PPM")
            rows.append([name, width, height, *roi, c])
            test_name = f"{len(test_rows):05d}.ppm"
            Image.fromarray(pixels).save(test / test_name, format="PPM")
            test_rows.append([test_name, width, height, *roi, c])
        _write_csv(folder / f"GT-{c:05d}.csv", rows)
    _write_csv(test.parent / "GT-final_test.csv", test_rows)
    return {"train": classes * per_class, "test": len(test_rows)}


@pytest.fixture
def tiny_gtsrb() -> Callable[..., dict[str, int]]:
    """The writer of a tiny original-layout GTSRB (:func:`write_tiny_gtsrb`)."""
    return write_tiny_gtsrb


@pytest.fixture
def gtsrb_sign() -> Callable[..., np.ndarray]:
    """:func:`sign_image`, the picture the tiny GTSRB uses."""
    return sign_image


# --- a local HTTP server -------------------------------------------------------------------


@dataclass
class Server:
    """Files served on 127.0.0.1, with switches to misbehave.

    Attributes:
        files: path ("/name") -> bytes.
        cut_after: path -> bytes to send before dropping the connection (once per entry in
            ``cuts_left``).
        cuts_left: path -> how many more requests are cut.
        ignore_range: answer Range requests with the whole file (status 200).
        requests: (path, Range header or None) of every request, in order.
    """

    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, int] = field(default_factory=dict)
    cuts_left: dict[str, int] = field(default_factory=dict)
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)


def _handler(state: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            state.requests.append((self.path, range_header))
            body = state.files.get(self.path)
            if body is None:
                self.send_error(404)
                return
            start = 0
            if range_header and not state.ignore_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            payload = body[start:]
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if state.cuts_left.get(self.path, 0) > 0:
                state.cuts_left[self.path] -= 1
                self.wfile.write(payload[: state.cut_after[self.path]])
                self.wfile.flush()
                self.close_connection = True  # drop the rest: the client sees a short body
                return
            self.wfile.write(payload)

    return Handler


@pytest.fixture
def http_server() -> Iterator[Server]:
    """A ThreadingHTTPServer on 127.0.0.1 (random port) that serves ``Server.files``."""
    state = Server()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
