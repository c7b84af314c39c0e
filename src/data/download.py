"""Downloads with checksums, atomic writes of derived files, and the one error message for data that is missing
and cannot be fetched."""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

from src.errors import UserError


def md5(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def save_atomically(obj, path: Path) -> None:
    """torch.save to a temporary file beside `path`, then rename: a crash, or another rank or run reading at
    the same time, never sees half a file."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(urls: list[str], dest: Path, checksum: str | None) -> Path:
    """Download the first URL that works to `dest` (atomically) and verify its MD5. Returns dest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        tmp = Path(tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")[1])
        try:
            print(f"downloading {url} -> {dest}", flush=True)
            req = urllib.request.Request(url, headers={"User-Agent": "gradlab"})
            with urllib.request.urlopen(req, timeout=60) as r, open(tmp, "wb") as f:
                shutil.copyfileobj(r, f)
            if checksum and md5(tmp) != checksum:
                raise OSError(f"checksum mismatch (expected md5 {checksum})")
            os.replace(tmp, dest)
            return dest
        except OSError as e:  # URLError and timeouts are OSErrors
            errors.append(f"{url}: {e}")
        finally:
            tmp.unlink(missing_ok=True)
    raise OSError("; ".join(errors))


def ensure_files(folder: Path, files: dict[str, str], urls: list[str], download: bool, name: str,
                 config_group: str) -> None:
    """Make sure `folder` holds each of `files` (name -> md5), downloading the missing ones from `urls`
    (base URLs tried in turn) when `download` is true. A file present with a wrong checksum is an error.
    """
    missing = [f for f in files if not (folder / f).is_file()]
    for f in missing:
        if not download:
            break
        try:
            fetch([u.rstrip("/") + "/" + f for u in urls], folder / f, files[f])
        except OSError as e:
            raise UserError(f"{name}: could not download {f} ({e}). Put the files {sorted(files)} in {folder} "
                            f"(data.data_dir=<folder above it>), or train on data=digits, which needs no download.") from None
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise UserError(f"{name}: {folder} lacks {', '.join(missing)}. Set data.download=true to fetch them, point "
                        f"data.data_dir at a folder that holds {config_group}, or train on data=digits.")
