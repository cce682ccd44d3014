"""The worked example (examples/harmful_images.py, docs/example.md) at a tiny size."""

import importlib.util
import json
from pathlib import Path

import accjax

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "harmful_images.py"


def test_harmful_images_example_runs_and_writes_its_figure(tmp_path):
    spec = importlib.util.spec_from_file_location("harmful_images", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = [
        "--n-train",
        "64",
        "--n-val",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--top",
        "5",
        "--out",
        str(tmp_path),
    ]
    rows = example.main(argv)
    saved = json.loads((tmp_path / "harmful.json").read_text())
    assert saved["most_harmful"] == rows and len(rows) == 5
    scores = [r["sgd_ie"] for r in rows]
    assert scores == sorted(scores)  # most harmful (most negative) first
    splits = accjax.datasets.load(
        "digits", n_train=64, n_val=32, n_test=0, images=True, label_noise=0.1
    )
    flipped = set(splits.info["flipped"].tolist())
    assert [r["flipped"] for r in rows] == [r["index"] in flipped for r in rows]
    assert [r["label"] for r in rows] == [
        int(splits.train[1][r["index"]]) for r in rows
    ]
    assert (tmp_path / "harmful.png").stat().st_size > 1000
