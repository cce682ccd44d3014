"""accjax: training-data attribution along the SGD trajectory.

Influence of example k on a query f means f(params trained without k) -
f(params): positive if removing k would raise f (for a validation loss, k was
helpful), negative if k was harmful.
"""

from accjax import datasets as datasets
from accjax import metrics as metrics
from accjax import models as models
from accjax._src.cleanse import Cleansing as Cleansing
from accjax._src.cleanse import Subsets as Subsets
from accjax._src.cleanse import cleanse as cleanse
from accjax._src.cleanse import subset_retrain as subset_retrain
from accjax._src.estimators.acc import acc_sgd_ie as acc_sgd_ie
from accjax._src.estimators.acc_fast import acc_sgd_ie_fast as acc_sgd_ie_fast
from accjax._src.estimators.dvemb import acc_dvemb as acc_dvemb
from accjax._src.estimators.dvemb import dvemb as dvemb
from accjax._src.estimators.influence_function import (
    influence_function as influence_function,
)
from accjax._src.estimators.loo import loo_retrain as loo_retrain
from accjax._src.estimators.sgd_ie import sgd_ie as sgd_ie
from accjax._src.estimators.tracin import tracin as tracin
from accjax._src.problem import Influence as Influence
from accjax._src.problem import Problem as Problem
from accjax._src.problem import Run as Run
from accjax._src.problem import TrainState as TrainState
from accjax._src.problem import mean_loss as mean_loss
from accjax._src.problem import step_key as step_key
from accjax._src.schedule import epochs_of as epochs_of
from accjax._src.schedule import make_schedule as make_schedule
from accjax._src.train import make_step as make_step
from accjax._src.train import train as train

__version__ = "0.1.0"

__all__ = [
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
