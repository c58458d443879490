"""The logged model's code: everything inference needs to read a model directory, and nothing of the project.

MLflow copies this package into every logged model (``code_paths``) beside ``pyfunc.py``, the models-from-code
file, so a model carries the code it was logged with and imports nothing from ``train``, ``infer`` or ``newstag``:
a model directory (``meta.json`` + TF-IDF terms and weights as JSON and npz, or safetensors encoder + tokenizer +
head) is everything inference needs.  Nothing here unpickles: arrays load with ``allow_pickle=False``, older
baselines through skops with an explicit allow-list of types, torch weights are safetensors.
Every kind exposes ``labels`` and ``predict_proba(inputs)`` (and ``sentence_proba`` before quotation pooling); the
trainers evaluate through this same code, so what is scored is exactly what is logged.
"""
