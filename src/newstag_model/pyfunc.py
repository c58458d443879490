"""The MLflow pyfunc, a models-from-code file: MLflow runs it at load time with this package on ``sys.path``."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from newstag_model.load import load
from newstag_model.schema import as_frame, predictions_frame


class NewstagModel(PythonModel):
    """Takes a DataFrame with a ``text`` column; ``model_config={"runtime": "onnx", "threads": 1}`` picks the runtime
    and its intra-op threads at load."""

    def load_context(self, context):
        config = context.model_config or {}
        self.classifier = load(context.artifacts["model"], config.get("runtime"), config.get("threads"))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        """Rows of one `article_id` are read as one article (each other's context); other rows stand alone."""
        return predictions_frame(self.classifier.labels, self.classifier.predict_proba(as_frame(model_input)))


mlflow.models.set_model(NewstagModel())
