"""Features: which columns the model uses (``roles``, decided when the data is loaded) and how they are
encoded into the matrix it trains and predicts on (``encoding``, fitted on the training rows)."""

from pipeline.features.encoding import (
    MAX_CATEGORIES,
    Preprocessor,
    cross_name,
    finite_or_missing,
    xgboost_names,
)
from pipeline.features.roles import (
    LEAK_SCORE,
    ColumnRole,
    FeatureRoles,
    check_declared,
    feature_roles,
    leak_score,
    looks_like_row_index,
    thousands_mark,
)

__all__ = [
    "LEAK_SCORE",
    "MAX_CATEGORIES",
    "ColumnRole",
    "FeatureRoles",
    "Preprocessor",
    "check_declared",
    "cross_name",
    "feature_roles",
    "finite_or_missing",
    "leak_score",
    "looks_like_row_index",
    "thousands_mark",
    "xgboost_names",
]
