"""Downloads shared by the data sources: fetching, md5 checks, staging folders, archives.

Downloads go to a temporary folder inside the target folder (:func:`_staging_dir`) and are moved
into place by the caller only once complete and verified, so a failed download leaves nothing
behind, and a local copy is never changed. Every download is checked against its official md5.
:func:`_fetch` is the only code that touches the network (tests replace it).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import tarfile
import tempfile
import urllib.request
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from nasp.data.base import _one_line
from nasp.errors import DatasetError

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT = 60.0
"""Seconds a download may wait for the server before it fails."""


class _DownloadError(Exception):
    """A download failed; the message says which and why (wrapped into a DatasetError)."""


def _fetch(url: str, out: BinaryIO) -> None:
    """Copy the body of ``url`` into ``out``: the only code that touches the network."""
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
        while chunk := response.read(1 << 20):
            out.write(chunk)


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, dest: Path, md5: str) -> None:
    """Download ``url`` to ``dest`` (in a temporary folder) and check its md5."""
    log.info("downloading %s", url)
    try:
        with open(dest, "wb") as out:
            _fetch(url, out)
    except (OSError, http.client.HTTPException, ValueError) as err:
        raise _DownloadError(f"downloading {url} failed ({_one_line(err)})") from err
    got = _md5(dest)
    if got != md5:
        raise _DownloadError(f"the file downloaded from {url} has md5 {got}, not the official "
                             f"{md5} (a damaged or changed download)")


def _staging_dir(folder: Path, title: str) -> tempfile.TemporaryDirectory:
    """A temporary folder inside ``folder`` (created if needed) to download and unpack into."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return tempfile.TemporaryDirectory(dir=folder, prefix=".nasp-download-")
    except OSError as err:
        raise DatasetError(f"{title} would be downloaded into {folder}, but that folder cannot "
                           f"be written ({_one_line(err)}); choose another with --data-dir"
                           ) from err


def _extract(archive: Path, dest: Path, top: str) -> None:
    """Unpack the members of ``archive`` under ``top/`` into ``dest``; refuse unsafe members."""
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = []
            for member in tar.getmembers():
                parts = PurePosixPath(member.name).parts
                if (PurePosixPath(member.name).is_absolute() or ".." in parts
                        or not (member.isfile() or member.isdir())):
                    raise _DownloadError(f"the downloaded {archive.name} holds an unsafe "
                                         f"entry {member.name!r}, so it was not unpacked")
                if parts and parts[0] == top:
                    members.append(member)
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(dest, members=members, **extra)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise _DownloadError(f"the downloaded {archive.name} could not be unpacked "
                             f"({_one_line(err)})") from err
    if not (dest / top).is_dir():
        raise _DownloadError(f"the downloaded {archive.name} has no {top} folder")

