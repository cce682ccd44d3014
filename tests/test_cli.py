import json

import pytest

from accjax._src.cli import main


def test_help_exits_zero(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_bad_flag_exits_two():
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--no-such-flag"])
    assert exc.value.code == 2


def test_bad_size_is_reported(capsys, tmp_path):
    assert main(["demo", "--n-train", "600", "--out", str(tmp_path)]) == 2
    assert "--n-train 600" in capsys.readouterr().err


def test_demo_end_to_end_small(tmp_path, capsys):
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--n-train",
            "40",
            "--n-val",
            "30",
            "--epochs",
            "3",
            "--batch-size",
            "10",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    printed = captured.out
    assert "acc_sgd_ie" in printed and "kendall" in printed
    report = json.loads((out / "demo.json").read_text())
    assert report["setting"]["num_steps"] == 12
    assert len(report["influence"]["exact"]) == 40
    assert set(report["metrics"]) == {"sgd_ie", "acc_sgd_ie", "acc_nonlinear"}
    png = (out / "demo.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files


def test_data_fetch_bundled_and_unknown(capsys):
    assert main(["data", "fetch", "digits"]) == 0  # ships with scikit-learn
    assert main(["data", "fetch", "no-such-set"]) == 1
    assert "no-such-set" in capsys.readouterr().err


def test_experiment_grid_writes_outputs_and_resumes(tmp_path, capsys):
    out = tmp_path / "exp"
    argv = [
        "experiment",
        "--models",
        "logreg",
        "--epochs",
        "1",
        "2",
        "--seeds",
        "1",
        "--n-train",
        "30",
        "--n-val",
        "20",
        "--n-test",
        "10",
        "--batch-size",
        "10",
        "--conditions",
        "clean",
        "label",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    report = json.loads((out / "grid.json").read_text())
    assert len(report["rows"]) == 4
    row = report["rows"][0]
    assert {"sgd_ie", "acc_sgd_ie", "dataset", "epochs"} <= set(row)
    assert set(row["acc_sgd_ie"]) >= {"rmse", "kendall", "jaccard@10", "lds"}
    assert -1 <= row["acc_sgd_ie"]["lds"] <= 1
    assert "breast_cancer/logreg/label/2" in report["summary"]
    csv_lines = (out / "summary.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 4 * 2  # header + settings x estimators
    for png in ("metrics.png", "scatter.png"):
        assert (out / png).read_bytes().startswith(b"\x89PNG")
    assert {r["l2"] for r in report["rows"]} != {0.5}  # CV-chosen by default
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 0  # nothing left to run
    assert "[" not in capsys.readouterr().err


def test_experiment_l2_override(tmp_path):
    out = tmp_path / "exp"
    argv = [
        "experiment",
        "--models",
        "logreg",
        "--epochs",
        "1",
        "--seeds",
        "1",
        "--n-train",
        "20",
        "--n-val",
        "10",
        "--n-test",
        "10",
        "--batch-size",
        "10",
        "--l2",
        "0.5",
        "--estimators",
        "sgd_ie",
        "tracin",
        "tracin_cp",
        "dvemb",
        "acc_dvemb",
        "influence_function",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    report = json.loads((out / "grid.json").read_text())
    names = {"tracin", "tracin_cp", "dvemb", "acc_dvemb", "influence_function"}
    assert names <= set(report["rows"][0])
    assert main([*argv[:-2], "--optimizer", "adam", "--out", str(out / "a")]) == 2
    assert [r["l2"] for r in report["rows"]] == [0.5]
    assert report["setting"]["l2"] == 0.5


def test_cleanse_end_to_end_small(tmp_path, capsys):
    out = tmp_path / "cleanse"
    args = ["cleanse", "--n-train", "60", "--n-val", "40", "--n-test", "50"]
    args += ["--epochs", "2", "--batch-size", "20", "--seeds", "2"]
    args += ["--remove", "1", "5", "--random-draws", "2", "--out", str(out)]
    code = main(args)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "test error after removing" in captured.out
    assert "recall" in captured.out and "[seed 2/2]" in captured.err
    report = json.loads((out / "cleanse.json").read_text())
    assert [r["seed"] for r in report["rows"]] == [0, 1]
    summary = report["summary"]
    assert list(summary["results"]) == ["sgd_ie", "acc_sgd_ie", "exact", "random"]
    assert summary["remove"] == [1, 5]
    for row in report["rows"]:  # 10 % of 60 labels flipped per seed
        assert len(row["flipped"]) == 6 and row["replay_error"] < 1e-14
    assert (out / "cleanse.png").read_bytes().startswith(b"\x89PNG")
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_cleanse_bad_option_is_reported(capsys, tmp_path):
    code = main(["cleanse", "--remove", "0", "--out", str(tmp_path), "--n-train", "40"])
    assert code == 2
    assert "`remove`" in capsys.readouterr().err


def test_experiment_warns_when_the_l2_makes_sgd_diverge():
    import accjax
    from accjax._src.experiment import make_problem

    splits = accjax.datasets.load("breast_cancer", n_train=20, n_val=10, n_test=10)
    with pytest.warns(UserWarning, match="diverge"):
        make_problem("logreg", splits, 0, l2=25.0)


def test_experiment_settings_reuse_compiled_estimators():
    """A grid's settings differ in data and seed, not in code: the second seed
    must not compile the estimators again (a 300-setting grid ran out of memory
    on compiled code before the optimizer was shared)."""
    import accjax
    from accjax._src.estimators import acc, loo
    from accjax._src.experiment import make_problem, run_setting

    for seed in (0, 1):
        splits = accjax.datasets.load(
            "breast_cancer", n_train=20, n_val=10, n_test=10, seed=seed
        )
        problem, optimizer, lr, query = make_problem("mlp", splits, seed)
        run_setting(
            problem, optimizer, lr, query, epochs=2, batch_size=10,
            estimators=["acc_sgd_ie"],
        )  # fmt: skip
        if seed == 0:
            sizes = (acc.acc_chunks._cache_size(), loo._loo_chunks._cache_size())
    assert (acc.acc_chunks._cache_size(), loo._loo_chunks._cache_size()) == sizes
