"""Where the data files live: the data directory and its per-dataset folders."""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "ACCJAX_DATA"

# Each data set's files sit in this folder of the data directory (the layout of
# /work/shared/data and of what `fetch` writes).
FOLDERS = {
    "adult": "adult",
    "news20": "20newsgroups",
    "mnist": "mnist",
    "cifar10": "cifar10/cifar-10-batches-bin",
}


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/accjax`, else `~/.cache/accjax`."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "accjax"


def resolve_with_origin(data_dir: str | os.PathLike | None = None) -> tuple[Path, str]:
    """The data directory and a phrase that says where it came from."""
    if data_dir is not None:
        if not isinstance(data_dir, str | os.PathLike):
            raise TypeError(
                "`data_dir` must be a path (str or os.PathLike) or None; got "
                f"{data_dir!r}. Pass the folder that holds e.g. `mnist/`."
            )
        return Path(data_dir).expanduser(), "the `data_dir` argument"
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser(), f"${ENV_VAR}"
    xdg = os.environ.get("XDG_CACHE_HOME")
    origin = "$XDG_CACHE_HOME/accjax" if xdg else "the default cache ~/.cache/accjax"
    return default_cache_dir(), origin


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The directory the loaders read from and `fetch` writes to.

    Resolution order: the `data_dir` argument; else the environment variable
    `ACCJAX_DATA`; else a per-user cache, `$XDG_CACHE_HOME/accjax` or
    `~/.cache/accjax`. The directory need not exist yet.

    Args:
      data_dir: an explicit directory, or None to use the environment.

    Returns:
      The data directory as a `pathlib.Path` (`~` expanded).
    """
    return resolve_with_origin(data_dir)[0]


def dataset_folder(name: str, data_dir: str | os.PathLike | None) -> tuple[Path, str]:
    """The folder of data set `name` inside the resolved data directory."""
    root, origin = resolve_with_origin(data_dir)
    return root / FOLDERS[name], origin
