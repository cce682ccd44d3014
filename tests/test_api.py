import accjax


def test_public_api_is_pinned():
    assert sorted(accjax.__all__) == [
        "Cleansing",
        "Influence",
        "Problem",
        "Run",
        "Subsets",
        "TrainState",
        "acc_dvemb",
        "acc_sgd_ie",
        "acc_sgd_ie_fast",
        "cleanse",
        "datasets",
        "dvemb",
        "epochs_of",
        "influence_function",
        "loo_retrain",
        "make_schedule",
        "make_step",
        "mean_loss",
        "metrics",
        "models",
        "sgd_ie",
        "step_key",
        "subset_retrain",
        "tracin",
        "train",
    ]
    for name in accjax.__all__:
        assert getattr(accjax, name) is not None
