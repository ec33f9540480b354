"""The logged model (MLflow models-from-code): raw rows in, predictions out, preprocessor and model bundled.

MLflow runs this file when the model is loaded (``mlflow.pyfunc.load_model("models:/NAME@ALIAS")``); the
``pipeline`` package travels with the model as ``code_paths``, so loading needs no install of this project.
Regression models return one value per row; classifiers return a frame with the predicted ``label`` and
one ``probability_<class>`` column per class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

from pipeline import families
from pipeline.features import Preprocessor
from pipeline.metrics import Task
from pipeline.outputs import output


class PreprocessedModel(PythonModel):
    """Applies the fitted preprocessor, then the family's model (trained for the rounds kept)."""

    def load_context(self, context):
        described = json.loads(Path(context.artifacts["description"]).read_text())
        self.family = families.get(described["family"])
        self.task = Task(described["task"], tuple(described["classes"]))
        self.preprocessor = Preprocessor.load(context.artifacts["preprocessor"])
        self.model = self.family.load(Path(context.artifacts["model"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> Any:
        if problem := self.preprocessor.text_in_numbers(model_input):  # else read as missing, silently
            raise MlflowException(f"{problem} where the model expects numbers", INVALID_PARAMETER_VALUE)
        predictions = self.family.predict(self.model, self.preprocessor.transform(model_input), self.task)
        return output(predictions, self.task)


mlflow.models.set_model(PreprocessedModel())
