"""Hyperparameter optimization for tabular ML: declared search spaces, hyperopt TPE, one MLflow run per
trial, and the best model retrained, logged and registered under an alias."""

__version__ = "0.1.0"
