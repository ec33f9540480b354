"""Hyperparameter optimization for tabular ML: declared search spaces, hyperopt TPE, one MLflow run per
trial, and the best model retrained, logged and registered under an alias.

The public API: ``Study`` (build it from a study file or from configurations in memory, then ``run()``),
``StudyResult``, and the error types. Imported on first use, so ``python -m pipeline --help`` stays fast.

>>> import pipeline
>>> result = pipeline.Study.from_file("studies/flights.yaml", max_evals=10).run()  # doctest: +SKIP
>>> result.best_params, result.test_metric, result.model_uri  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipeline.errors import InputError, PipelineError, StudyLocked, TooManyFailures, TrackingError

__version__ = "0.1.0"
__all__ = [
    "InputError",
    "PipelineError",
    "Study",
    "StudyLocked",
    "StudyResult",
    "TooManyFailures",
    "TrackingError",
    "__version__",
]

if TYPE_CHECKING:
    from pipeline.study import Study, StudyResult


def __getattr__(name: str) -> Any:
    if name in ("Study", "StudyResult"):
        from pipeline import study

        return getattr(study, name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
