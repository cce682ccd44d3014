import os
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

REPO = Path(__file__).resolve().parents[1]
# CI sets this to 1: there a missing data directory fails the data tests
# instead of skipping them.
REQUIRE_DATA_VAR = "ACCJAX_REQUIRE_DATA"
NO_DATA_REASON = (
    "needs the real data files (adult/, mnist/, 20newsgroups/, cifar10/): set "
    "ACCJAX_DATA to the folder that holds them, or download them with "
    "`accjax data fetch NAME` (into ~/.cache/accjax) and set ACCJAX_DATA there"
)


def find_real_data_dir() -> str | None:
    """$ACCJAX_DATA, else ../shared/data beside the repository, else None."""
    env = os.environ.get("ACCJAX_DATA")
    if env:
        return env
    fallback = REPO.parent / "shared" / "data"
    return str(fallback) if fallback.is_dir() else None


@pytest.fixture(scope="session")
def real_data_dir() -> str:
    """The directory of the real benchmark files; skips (fails in CI) without one."""
    found = find_real_data_dir()
    if found is not None:
        return found
    if os.environ.get(REQUIRE_DATA_VAR) == "1":
        pytest.fail(f"{REQUIRE_DATA_VAR}=1 but no data directory: {NO_DATA_REASON}.")
    pytest.skip(NO_DATA_REASON)
