"""The worked example (examples/harmful_images.py, docs/example.md) at a tiny size."""

import importlib.util
import json
from pathlib import Path

import accjax
from tests.test_datasets import fake, fake_dir  # noqa: F401 (fixtures)

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


TEXT_EXAMPLE = EXAMPLE.with_name("text_attribution.py")


def test_text_attribution_example_on_a_fake_archive(tmp_path, fake_dir):  # noqa: F811
    """examples/text_attribution.py at a tiny size, on the fake 20 Newsgroups
    archive in the official layout (so it runs without the real files)."""
    spec = importlib.util.spec_from_file_location("text_attribution", TEXT_EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    argv = ["--data-dir", str(fake_dir), "--n-train", "60", "--n-val", "5",
            "--seq-len", "12", "--width", "8", "--epochs", "2", "--batch-size",
            "10", "--top", "3", "--out", str(tmp_path)]  # fmt: skip
    report = example.main(argv)
    saved = json.loads((tmp_path / "text_attribution.json").read_text())
    assert saved == report
    supporting = [r["score"] for r in report["supporting"]]
    opposing = [r["score"] for r in report["opposing"]]
    assert supporting == sorted(supporting, reverse=True) and len(supporting) == 3
    assert opposing == sorted(opposing) and opposing[0] <= supporting[-1]
    selfs = [r["score"] for r in report["most_self_influential"]]
    assert selfs == sorted(selfs, reverse=True)
    splits = accjax.datasets.load_text(
        data_dir=fake_dir, n_train=60, n_val=5, max_len=12, label_noise=0.1
    )
    flipped = set(splits.info["flipped"].tolist())
    for r in report["supporting"] + report["most_self_influential"]:
        assert r["flipped"] == (r["index"] in flipped)
        assert r["label"] == splits.info["class_names"][splits.train[1][r["index"]]]
