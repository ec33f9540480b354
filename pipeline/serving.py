"""The logged model (MLflow models-from-code): raw rows in, predictions out, preprocessor and booster bundled.

MLflow runs this file when the model is loaded (``mlflow.pyfunc.load_model("models:/NAME@ALIAS")``); the
``pipeline`` package travels with the model as ``code_paths``, so loading needs no install of this project.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import xgboost as xgb

from pipeline.features import Preprocessor


class PreprocessedBooster(mlflow.pyfunc.PythonModel):
    """Applies the fitted preprocessor, then the booster truncated to its best iteration."""

    def load_context(self, context):
        self.preprocessor = Preprocessor.load(context.artifacts["preprocessor"])
        self.booster = xgb.Booster(model_file=context.artifacts["booster"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        return self.booster.inplace_predict(self.preprocessor.transform(model_input)).astype(np.float64)


mlflow.models.set_model(PreprocessedBooster())
