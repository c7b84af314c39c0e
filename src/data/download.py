"""Downloads with checksums, safe and atomic extraction of archives, atomic writes of derived files, and the one error
message for data that is missing and cannot be fetched."""
from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from src.errors import DiskFull, UserError, out_of_space

log = logging.getLogger(__name__)


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
        with open(tmp, "wb") as f:  # through a Python file, a full disk is an OSError saying so, not torch's
            torch.save(obj, f)      # "unexpected pos" from its own writer
        os.replace(tmp, path)
    except Exception as e:
        full = out_of_space(e)
        if full:
            raise DiskFull(path, full) from None
        raise
    finally:
        tmp.unlink(missing_ok=True)


def fetch(urls: list[str], dest: Path, checksum: str | None) -> Path:
    """Download the first URL that works to `dest` (atomically) and verify its MD5. Returns dest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        tmp = Path(tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")[1])
        try:
            log.info("downloading %s -> %s", url, dest)
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
                            f"(data.data_dir=<folder above it>), or train on data=digits, which needs no "
                            f"download.") from None
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise UserError(f"{name}: {folder} lacks {', '.join(missing)}. Set data.download=true to fetch them, point "
                        f"data.data_dir at a folder that holds {config_group}, or train on data=digits.")


def extract(archive: Path, dest: Path, select: Callable[[str], str | None] | None = None,
            check: Callable[[Path], None] | None = None) -> Path:
    """Unpack a tar (.tar, .tar.gz, .tgz) or zip `archive` so that `dest` is whole or absent, never half there.

    The members go into a temporary folder beside `dest` first; `check(folder)` may refuse the result (a tree
    checksum) by raising; then one rename makes it `dest`. When `dest` already exists (an older partial copy, or
    another process that finished first), each file is renamed into it instead, one atomic rename each.
    `select(member name)` gives the path under `dest` to write a member to, or None to skip it (by default every
    regular file, at its own path). Links and devices are never written, and an archive with a member that would
    land outside `dest` (an absolute path, `..`) is refused. A corrupt or truncated archive is a UserError naming
    it and the fix.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info("extracting %s -> %s", archive, dest)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.part"))
    try:
        with _members(archive) as members:
            for name, is_file, open_member in members:
                if PurePosixPath(name).is_absolute() or ".." in PurePosixPath(name).parts:
                    raise UserError(f"{archive} holds an unsafe member {name!r} (an absolute path or '..'), so it "
                                    f"is not the archive expected: delete it and download it again.")
                rel = select(name) if select else name
                if not is_file or rel is None or not PurePosixPath(rel).parts:
                    continue
                out = tmp.joinpath(*PurePosixPath(rel).parts)
                out.parent.mkdir(parents=True, exist_ok=True)
                with open_member() as src, open(out, "wb") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
        if check:
            check(tmp)
        if not dest.exists():
            try:
                os.replace(tmp, dest)
                return dest
            except OSError:  # another process put dest there first: merge into it below
                if not dest.is_dir():
                    raise
        for f in sorted(p for p in tmp.rglob("*") if p.is_file()):
            target = dest / f.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(f, target)
        return dest
    except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise UserError(f"{archive} is corrupt or truncated ({e}): delete it and run again to download it afresh.") \
            from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def inside(folder: str, keep: Callable[[str], bool] = lambda rel: True) -> Callable[[str], str | None]:
    """A `select` for extract(): the members under `folder/` (for which keep(path below it) holds), written
    without that prefix."""
    def select(name: str) -> str | None:
        rel = name.removeprefix("./").removeprefix(f"{folder}/")
        return rel if rel != name.removeprefix("./") and keep(rel) else None
    return select


@contextlib.contextmanager
def _members(archive: Path):
    """(name, is a regular file, opener) of each member of a tar or zip archive."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            yield ((i.filename, not i.is_dir(), functools.partial(z.open, i)) for i in z.infolist())
        return
    with tarfile.open(archive) as tar:
        yield ((m.name, m.isfile(), functools.partial(tar.extractfile, m)) for m in tar)
