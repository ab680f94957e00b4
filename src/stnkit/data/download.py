"""Resumable, checksum-verified, atomic downloads of MNIST and GTSRB (standard library only).

A file is fetched into ``<name>.part`` (resumed with an HTTP ``Range`` request when a partial
``.part`` exists), its checksum is verified, and only then is it renamed to ``<name>`` with
``os.replace`` (atomic on one file system). So a file under its final name is always complete
and verified; an interrupted download leaves only a ``.part`` that the next run resumes, and a
download with the wrong checksum leaves nothing.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from stnkit.data.mnist import MNIST_FILES

__all__ = [
    "DOWNLOADABLE",
    "ChecksumError",
    "DownloadError",
    "RemoteFile",
    "download_dataset",
    "download_file",
]

_CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A download failed after all retries and mirrors; a resumable ``.part`` may remain."""


class ChecksumError(DownloadError):
    """A downloaded (or already present) file does not have the expected checksum."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset as published.

    Attributes:
        name: file name under the dataset folder.
        urls: mirrors, tried in order.
        sha256: expected SHA-256 (preferred).
        md5: expected MD5, where only that is published.
        extract: a zip to unpack into the dataset folder after verification.
    """

    name: str
    urls: tuple[str, ...]
    sha256: str | None = None
    md5: str | None = None
    extract: bool = False


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's mirror
    "http://yann.lecun.com/exdb/mnist/",  # the original site (often refuses robots)
)
_GTSRB_BASE = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"

# dataset -> (sub-folder of the data root, files). MNIST SHA-256s are the published ones
# (shared/data/SHA256SUMS). For GTSRB only MD5s of the two test archives are published (the
# ones torchvision checks); for the training archive we know no published checksum, so it is
# verified by the CRC of every zip member and by the per-class image counts after unpacking.
DOWNLOADABLE: dict[str, tuple[str, tuple[RemoteFile, ...]]] = {
    "mnist": (
        "mnist",
        tuple(
            RemoteFile(
                name=f"{stem}.gz",
                urls=tuple(m + f"{stem}.gz" for m in _MNIST_MIRRORS),
                sha256=known.gz_sha256,
            )
            for stem, known in MNIST_FILES.items()
        ),
    ),
    "gtsrb": (
        "gtsrb",
        (
            RemoteFile(
                "GTSRB_Final_Training_Images.zip",
                (_GTSRB_BASE + "GTSRB_Final_Training_Images.zip",),
                extract=True,
            ),
            RemoteFile(
                "GTSRB_Final_Test_Images.zip",
                (_GTSRB_BASE + "GTSRB_Final_Test_Images.zip",),
                md5="c7e4e6327067d32654124b0fe9e82185",
                extract=True,
            ),
            RemoteFile(
                "GTSRB_Final_Test_GT.zip",
                (_GTSRB_BASE + "GTSRB_Final_Test_GT.zip",),
                md5="fe31e9c9270bbcd7b84b7f21a9d9d9e5",
                extract=True,
            ),
        ),
    ),
}

# Images per class in the official training set (PROVENANCE.md), checked after unpacking.
_GTSRB_TRAIN_COUNTS = (
    210, 2220, 2250, 1410, 1980, 1860, 420, 1440, 1410, 1470, 2010, 1320, 2100, 2160, 780, 630,
    420, 1110, 1200, 210, 360, 330, 390, 510, 270, 1500, 600, 240, 540, 270, 450, 780, 240, 689,
    420, 1200, 390, 210, 2070, 300, 360, 240, 240,
)  # fmt: skip

Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _verify(path: Path, *, sha256: str | None, md5: str | None) -> str | None:
    """None if ``path`` matches the expected checksum (or none is known), else a message."""
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None:
            got = _digest(path, algorithm)
            if got != expected.lower():
                return f"{algorithm} {got}, expected {expected}"
            return None
    return None


class _Incomplete(Exception):
    """The server closed the connection before sending everything (resumable)."""


def _fetch(url: str, part: Path, *, timeout: float, progress: Progress | None) -> None:
    """Append the rest of ``url`` to ``part``, resuming from its current size."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "stnkit-downloader"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and offset:  # nothing left to send: the .part is already whole
            return
        raise
    with response:
        resumed = offset > 0 and response.status == 206
        if resumed:
            content_range = response.headers.get("Content-Range", "")
            if not content_range.startswith(f"bytes {offset}-"):
                raise _Incomplete(f"server answered Range {offset}- with {content_range!r}")
        else:
            offset = 0  # the server ignored Range (status 200): start over
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header is not None else None
        total = offset + length if length is not None else None
        received = 0
        with open(part, "ab" if resumed else "wb") as f:
            try:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(offset + received, total)
            except (http.client.IncompleteRead, ConnectionError, TimeoutError) as err:
                raise _Incomplete(str(err) or type(err).__name__) from err
            finally:
                f.flush()
                os.fsync(f.fileno())
        if length is not None and received != length:
            raise _Incomplete(f"got {received} of {length} bytes")


def download_file(
    urls: str | Sequence[str],
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> Path:
    """Download ``dest`` from the first mirror that works: resumable, verified, atomic.

    Args:
        urls: one URL or mirrors tried in order.
        dest: final path; the data goes to ``dest + ".part"`` until verified.
        sha256: expected SHA-256 (or ``md5``); with neither, the file is accepted as is.
        md5: expected MD5, where only that is published.
        retries: extra attempts after a connection drop; each resumes the ``.part``.
        timeout: socket timeout in seconds.
        progress: called with (bytes so far, total bytes or None).

    Returns:
        ``dest``; already-present verified files are not downloaded again.

    Raises:
        ChecksumError: the downloaded or existing file has the wrong checksum (a downloaded
            one is deleted; an existing one is left for the user to inspect).
        DownloadError: every attempt failed; a partial ``.part`` is kept for resuming.
    """
    dest = Path(dest)
    mirrors = [urls] if isinstance(urls, str) else list(urls)
    if dest.exists():
        problem = _verify(dest, sha256=sha256, md5=md5)
        if problem is None:
            return dest
        raise ChecksumError(f"existing {dest} has {problem}; delete it and download again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    errors: list[str] = []
    for attempt in range(retries + 1):
        for url in mirrors:
            try:
                _fetch(url, part, timeout=timeout, progress=progress)
            except urllib.error.HTTPError as err:
                errors.append(f"{url}: HTTP {err.code} {err.reason}")
                continue
            except (_Incomplete, urllib.error.URLError, OSError, http.client.HTTPException) as err:
                errors.append(f"{url} (attempt {attempt + 1}): {err}")
                continue
            problem = _verify(part, sha256=sha256, md5=md5)
            if problem is not None:
                part.unlink(missing_ok=True)
                raise ChecksumError(
                    f"download of {dest.name} from {url} is corrupt: {problem}; "
                    "nothing was kept, run the command again"
                )
            os.replace(part, dest)
            return dest
    kept = f"; partial data kept in {part}, run again to resume" if part.exists() else ""
    raise DownloadError(f"could not download {dest.name}: {'; '.join(errors)}{kept}")


def _merge_move(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; whole subtrees move with one atomic rename where possible."""
    if not dst.exists():
        os.replace(src, dst)
    elif src.is_dir() and dst.is_dir():
        for child in src.iterdir():
            _merge_move(child, dst / child.name)
    else:
        os.replace(src, dst)


def extract_zip(archive: str | os.PathLike[str], into: str | os.PathLike[str]) -> None:
    """Unpack ``archive`` into ``into`` without ever exposing a half-unpacked tree.

    Every member's CRC is checked first, members escaping the folder are refused, and the tree
    is unpacked into a hidden temporary folder, then renamed into place.

    Raises:
        ChecksumError: a member fails its CRC, or the file is not a zip.
        DownloadError: a member path escapes the target folder.
    """
    archive, into = Path(archive), Path(into)
    tmp = into / f".{archive.name}.unpacking"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise ChecksumError(f"{archive}: member {bad} fails its CRC check")
            root = tmp.resolve()
            for member in zf.namelist():
                target = (tmp / member).resolve()
                if target != root and root not in target.parents:
                    raise DownloadError(f"{archive}: member {member!r} escapes the folder")
            zf.extractall(tmp)
        for child in tmp.iterdir():
            _merge_move(child, into / child.name)
    except zipfile.BadZipFile as err:
        raise ChecksumError(f"{archive}: not a valid zip archive ({err})") from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_gtsrb_train_counts(folder: Path) -> None:
    images = folder / "GTSRB" / "Final_Training" / "Images"
    counts = tuple(len(list((images / f"{c:05d}").glob("*.ppm"))) for c in range(len(_GTSRB_TRAIN_COUNTS)))
    if counts != _GTSRB_TRAIN_COUNTS:
        raise DownloadError(
            f"{images}: per-class image counts {counts} differ from the official "
            f"{_GTSRB_TRAIN_COUNTS}; the archive is incomplete or not the official one"
        )


def _print_progress(name: str) -> Progress:
    last = [-1]

    def report(done: int, total: int | None) -> None:
        mib = done >> 20
        if mib == last[0]:  # one line update per MiB
            return
        last[0] = mib
        of = f" / {total / 2**20:.1f}" if total else ""
        print(f"\r{name}: {done / 2**20:.1f}{of} MiB", end="", file=sys.stderr, flush=True)

    return report


def download_dataset(
    name: str,
    to: str | os.PathLike[str],
    *,
    base_url: str | None = None,
    files: Sequence[RemoteFile] | None = None,
    retries: int = 3,
    timeout: float = 60.0,
    keep_archives: bool = False,
    verbose: bool = True,
) -> Path:
    """Download a dataset into ``<to>/<name>/`` so that ``to`` works as a data root.

    Args:
        name: ``"mnist"`` or ``"gtsrb"``.
        to: the data root to fill (created if missing).
        base_url: replace the official mirrors with ``base_url + file name`` (a local mirror);
            the official checksums still apply.
        files: replace the file list entirely (tests, private mirrors).
        retries: extra attempts per file after a connection drop (each resumes).
        timeout: socket timeout in seconds.
        keep_archives: keep GTSRB zips after unpacking (by default they are deleted and a
            ``.<zip>.done`` marker records the unpacking).
        verbose: print progress to stderr.

    Returns:
        The dataset folder ``<to>/<name>``.

    Raises:
        ValueError: unknown dataset name.
        ChecksumError, DownloadError: see :func:`download_file`.
    """
    if name not in DOWNLOADABLE:
        raise ValueError(f"cannot download {name!r}; valid: {sorted(DOWNLOADABLE)}")
    sub, official = DOWNLOADABLE[name]
    folder = Path(to).expanduser().resolve() / sub
    folder.mkdir(parents=True, exist_ok=True)
    for remote in files if files is not None else official:
        urls = (base_url.rstrip("/") + "/" + remote.name,) if base_url else remote.urls
        marker = folder / f".{remote.name}.done"
        if remote.extract and marker.exists():
            continue
        progress = _print_progress(remote.name) if verbose else None
        path = download_file(
            urls,
            folder / remote.name,
            sha256=remote.sha256,
            md5=remote.md5,
            retries=retries,
            timeout=timeout,
            progress=progress,
        )
        if verbose:
            print(f"\r{remote.name}: verified", file=sys.stderr)
        if remote.extract:
            extract_zip(path, folder)
            marker.touch()
            if not keep_archives:
                path.unlink()
    if name == "gtsrb" and files is None:
        _check_gtsrb_train_counts(folder)
    return folder
