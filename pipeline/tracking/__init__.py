"""The only package that talks to MLflow (the served pyfunc model aside): the store, runs, models, names."""

from pipeline.tracking.store import *  # noqa: F403
