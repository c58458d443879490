"""The output row is declared once (`infer.rows`); the pyfunc, which may not import it, returns exactly its model
part, and the one row builder types and orders every column as declared."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from infer import rows
from newstag_model.schema import predictions_frame

LABELS = ("claim", "attributed_quote", "unverified", "official_response")
PROBA = np.array([[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.15, 0.05]])


def test_pyfunc_output_is_the_declared_model_part_of_a_row():
    frame = predictions_frame(LABELS, PROBA)
    declared = pa.schema(rows.prediction_fields(LABELS))
    assert list(frame.columns) == declared.names
    arrow = pa.Schema.from_pandas(frame, preserve_index=False)
    # pandas strings convert to large_string; both are Parquet's UTF8, so the declaration's width does not matter.
    assert [pa.string() if t == pa.large_string() else t for t in arrow.types] == declared.types


def test_rows_are_built_with_the_declared_names_types_and_values():
    schema = rows.schema(LABELS)
    sentences = [("a1", 0, 0, 12, "Police said."), ("a1", 1, 13, 25, "It rained.")]
    table = rows.build(schema, sentences, predictions_frame(LABELS, PROBA), "models:/newstag@champion", None)
    assert table.schema == schema
    assert schema.names == ["article_id", "sentence_index", "start", "end", "text", "label", "score",
                            *(f"prob_{label}" for label in LABELS), "model_uri", "model_version"]
    assert table.to_pylist()[1] == {
        "article_id": "a1", "sentence_index": 1, "start": 13, "end": 25, "text": "It rained.", "label": "claim",
        "score": 0.7, "prob_claim": 0.7, "prob_attributed_quote": 0.1, "prob_unverified": 0.15,
        "prob_official_response": 0.05, "model_uri": "models:/newstag@champion", "model_version": None}
    assert rows.build(schema, [], pd.DataFrame(), "m", None) == schema.empty_table()


def test_a_model_output_that_breaks_the_declaration_is_refused():
    schema = rows.schema(LABELS)
    sentences = [("a1", 0, 0, 12, "Police said.")]
    with pytest.raises(KeyError):
        rows.build(schema, sentences, predictions_frame(LABELS[:3], PROBA[:1, :3]), "m", None)
    broken = predictions_frame(LABELS, PROBA[:1]).assign(score=["high"])
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        rows.build(schema, sentences, broken, "m", None)
