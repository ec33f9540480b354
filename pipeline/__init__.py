"""Hyperparameter optimization for tabular ML: declared search spaces, hyperopt TPE, one MLflow run per
trial, and the best model retrained, logged and registered under an alias."""

import os

# OpenMP threads that spin-wait between xgboost calls steal the other core on a busy machine and can make
# training ~10x slower (see STACK_NOTES); must be set before libgomp is loaded by xgboost or scikit-learn.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
