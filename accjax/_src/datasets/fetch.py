"""`fetch`: download the official files into the data directory, verified.

Every file is written to a temporary name in its destination folder, checked
against its known size and digest, and only then renamed into place, so an
interrupted or bad download never leaves a half-written data file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from accjax._src.datasets import cifar, files, paths
from accjax._src.datasets.load import _DATASETS, check_name

_CHUNK = 1 << 20


def _download(url: str, dest: Path) -> None:
    """Writes the body of `url` to `dest`; tests replace this function."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
        shutil.copyfileobj(response, f, _CHUNK)


def _temp_path(folder: Path, filename: str, origin: str) -> Path:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", suffix=".part", dir=folder)
    except OSError as err:
        raise OSError(
            f"cannot write to {folder} (data directory from {origin}): {err}. Pass "
            f"a writable `data_dir=` or set ${paths.ENV_VAR} to one."
        ) from err
    os.close(fd)
    return Path(tmp)


def _is_good(path: Path, spec: files.FileSpec) -> bool:
    try:
        files.verify(path, spec)
    except (OSError, ValueError):
        return False
    return True


def _fetch_one(spec: files.FileSpec, folder: Path, origin: str) -> Path:
    """Downloads one file (trying each URL) unless a good copy is in place."""
    dest = folder / spec.filename
    if dest.is_file() and _is_good(dest, spec):
        return dest
    failures = []
    for url in spec.urls:
        tmp = _temp_path(folder, spec.filename, origin)
        try:
            _download(url, tmp)
            files.verify(tmp, spec)
            os.replace(tmp, dest)
            return dest
        except (OSError, ValueError) as err:
            failures.append(f"{url}: {err}")
        finally:
            tmp.unlink(missing_ok=True)
    raise OSError(
        f"could not download a good `{spec.filename}` for {spec.dataset!r}; nothing "
        f"was written. Tried:\n  " + "\n  ".join(failures) + f"\nDownload it by hand "
        f"and put it at {dest} (expected {files.describe(spec)})."
    )


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# The members of the official CIFAR-10 archive that `fetch` extracts.
CIFAR_MEMBERS = (*cifar.TRAIN_FILES, "test_batch.bin")


def _fetch_cifar(folder: Path, origin: str) -> list[Path]:
    """Downloads the official binary archive and extracts the six batches."""
    specs = [files.SPECS[("cifar10", name)] for name in CIFAR_MEMBERS]
    dests = [folder / spec.filename for spec in specs]
    if all(d.is_file() and _is_good(d, s) for d, s in zip(dests, specs, strict=True)):
        return dests
    archive = _temp_path(folder.parent, "cifar-10-binary.tar.gz", origin)
    try:
        try:
            _download(files.CIFAR_URL, archive)
        except OSError as err:
            raise OSError(
                f"could not download {files.CIFAR_URL} ({err}); nothing was "
                f"written. Download it by hand and extract its "
                f"`cifar-10-batches-bin/` into {folder.parent}."
            ) from err
        got = _md5(archive)
        if got != files.CIFAR_ARCHIVE_MD5:
            raise OSError(
                f"{files.CIFAR_URL} gave a file with md5 {got}; expected "
                f"{files.CIFAR_ARCHIVE_MD5}. Nothing was written; try again later."
            )
        _extract(archive, specs, folder, origin)
    finally:
        archive.unlink(missing_ok=True)
    return dests


def _extract(archive: Path, specs, folder: Path, origin: str) -> None:
    """One pass over the archive; every member verified before any rename."""
    temps = {spec.filename: _temp_path(folder, spec.filename, origin) for spec in specs}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                base = name.removeprefix("cifar-10-batches-bin/")
                if member.isfile() and base in temps and base != name:
                    with open(temps[base], "wb") as f:
                        shutil.copyfileobj(tar.extractfile(member), f, _CHUNK)
        for spec in specs:
            files.verify(temps[spec.filename], spec)
        for spec in specs:
            os.replace(temps[spec.filename], folder / spec.filename)
    except (OSError, ValueError, tarfile.TarError) as err:
        raise OSError(
            f"the CIFAR-10 archive from {files.CIFAR_URL} could not be extracted "
            f"({err}); nothing was written to {folder}."
        ) from err
    finally:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)


def fetch(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Downloads a data set's official files into the data directory.

    The directory is resolved as for `load` (`data_dir`, else `$ACCJAX_DATA`,
    else the per-user cache), so `load` finds what `fetch` wrote. Files already
    present with the right checksum are kept; others are downloaded (trying each
    known mirror), verified against their size and sha256/md5, and renamed into
    place. `breast_cancer` and `digits` ship with scikit-learn: nothing to do.

    Args:
      name: a data set name, as for `load`.
      data_dir: the data directory; None means `$ACCJAX_DATA`, else the cache.

    Returns:
      The paths of the data set's files, now present and verified.

    Raises:
      ValueError: for an unknown name.
      OSError: if no source gave a file with the expected checksum, or the
        directory is not writable; nothing half-written is left behind.
    """
    check_name(name)
    key = _DATASETS[name].folder
    if key is None:
        return []
    folder, origin = paths.dataset_folder(key, data_dir)
    if key == "cifar10":
        return _fetch_cifar(folder, origin)
    specs = [spec for (ds, _), spec in files.SPECS.items() if ds == key]
    return [_fetch_one(spec, folder, origin) for spec in specs]
