"""Writing result files so that a failure never leaves one half-written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def atomic_write(path, write) -> None:
    """Calls `write(tmp)` on a temporary file beside `path`, then renames it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def dump_json(path, obj, *, indent=None) -> None:
    """`json.dump` through `atomic_write`."""

    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent)

    atomic_write(path, write)
