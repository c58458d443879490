"""The output row of ``newstag tag``, declared once (names, types, order) and built in one place.

One row a sentence: where it is in its article, what the model said and which model said it.  The middle part is
the pyfunc's own output (``label``, ``score``, one ``prob_<label>`` per label in the model's label order); the
pyfunc file cannot import this module (MLflow copies it alone into each model), so a test holds its columns to
:func:`prediction_fields`.  Both engines and both writers take the schema from here, so a new field is one edit.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

PROB = "prob_"
SENTENCE = pa.schema([("article_id", pa.string()), ("sentence_index", pa.int64()), ("start", pa.int64()),
                      ("end", pa.int64()), ("text", pa.string())])
MODEL = pa.schema([("model_uri", pa.string()), ("model_version", pa.string())])


def prediction_fields(labels: tuple[str, ...]) -> list[pa.Field]:
    """The model's part of a row: what the pyfunc returns for each input row."""
    return [pa.field("label", pa.string()), pa.field("score", pa.float64()),
            *(pa.field(PROB + label, pa.float64()) for label in labels)]


def schema(labels: tuple[str, ...]) -> pa.Schema:
    return pa.schema([*SENTENCE, *prediction_fields(labels), *MODEL])


def build(row_schema: pa.Schema, sentences: list[tuple], predictions: pd.DataFrame, model_uri: str,
          model_version: str | None) -> pa.Table:
    """Rows from ``(article_id, sentence_index, start, end, text)`` tuples and the model's outputs for them.

    Strictly typed: a missing or mistyped model column raises here, so the job sees a broken model, not a file
    whose schema differs from chunk to chunk.  NaN scores stay NaN (not null), for the writer to refuse.
    """
    n = len(sentences)
    if not n:
        return row_schema.empty_table()
    given = dict(zip(SENTENCE.names, zip(*sentences))) | {"model_uri": [model_uri] * n,
                                                         "model_version": [model_version] * n}
    arrays = [pa.array(given[f.name] if f.name in given else predictions[f.name].to_numpy(), type=f.type)
              for f in row_schema]
    return pa.Table.from_arrays(arrays, schema=row_schema)
