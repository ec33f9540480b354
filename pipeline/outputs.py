"""What a served model returns for a task, from a model family's raw predictions.

Regression: one value per row. Classification: a frame with the predicted ``label`` and one
``probability_<class>`` column per class.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.metrics import BINARY, Task


def describe(family: str, task: Task) -> dict[str, Any]:
    return {"family": family, "task": task.kind, "classes": list(task.classes)}


def output(predictions: np.ndarray, task: Task) -> np.ndarray | pd.DataFrame:
    """What the served model returns for a family's raw predictions."""
    if not task.classification:
        return np.asarray(predictions, dtype=np.float64)
    proba = np.column_stack([1 - predictions, predictions]) if task.kind == BINARY else np.asarray(predictions)
    frame = pd.DataFrame(proba, columns=[f"probability_{c}" for c in task.classes])
    frame.insert(0, "label", np.asarray(task.classes, dtype=object)[np.argmax(proba, axis=1)])
    return frame


def scores(served: np.ndarray | pd.DataFrame) -> np.ndarray:
    """The numbers of a served output (values, or the probability columns), for comparing two outputs."""
    if isinstance(served, pd.DataFrame):
        return served.filter(like="probability_").to_numpy(dtype=np.float64)
    return np.asarray(served, dtype=np.float64)


def predictions(served: np.ndarray | pd.DataFrame, task: Task) -> np.ndarray:
    """What a family's ``predict`` gave, from a served output (the metrics take this form)."""
    numbers = scores(served)
    return numbers[:, 1] if task.kind == BINARY else numbers
