"""A tiny random BERT built from a config: train → log → reload → identical probabilities, offline, ONNX agreement."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import TINY, last_json, run_cli, tiny_transformer_config

pytest.importorskip("torch")
TEXTS = pd.read_json(TINY, lines=True)["text"].tolist()


def test_run_has_curves_and_shared_metric_names(tiny_transformer):
    from newstag_model.runtime import native_bf16

    client = mlflow.MlflowClient()
    run = client.get_run(tiny_transformer["run_id"])
    assert run.data.tags["model_kind"] == "transformer"
    # `auto` precision resolved on this machine, and said so in the run
    assert run.data.tags["resolved.train_precision"] == ("bf16" if native_bf16() else "fp32")
    for name in ("dev/macro_f1", "test/macro_f1", "test/f1_unverified", "dev/ece", "calibration/temperature"):
        assert name in run.data.metrics
    assert len(client.get_metric_history(run.info.run_id, "train/loss")) == 3
    assert len(client.get_metric_history(run.info.run_id, "dev/loss")) == 3
    # The final dev score is logged after the three epochs' curve points, at the last epoch's step, so it is the
    # value MLflow shows (UI, `newstag grid`, seed means), not the curve's last point.
    history = sorted(client.get_metric_history(run.info.run_id, "dev/macro_f1"), key=lambda m: m.timestamp)
    assert [m.step for m in history] == [1, 2, 3, 3]
    assert run.data.metrics["dev/macro_f1"] == pytest.approx(tiny_transformer["dev/macro_f1"], abs=1e-4)
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id)]
    assert not [a for a in artifacts if "checkpoint" in a]
    # Progress on stderr (stdout carries the JSON line): a line a step here (interval 0), one an epoch with the loss
    # MLflow holds, one a stage; the ONNX exporter's and quantiser's advice is not passed on.
    err = tiny_transformer["stderr"]
    losses = sorted(client.get_metric_history(run.info.run_id, "train/loss"), key=lambda m: m.step)
    for m in losses:
        assert f"newstag train: epoch {m.step}/3: train loss {m.value:.4f}" in err
    steps = re.search(r"newstag train: step 1/(\d+): 0\.\d min in", err)
    assert steps and int(steps.group(1)) % 3 == 0 and "newstag train: scoring test: " in err
    assert "torchvision" not in err and "pre-processing" not in err and "The axis name" not in err
    # MLflow's own registry lines give way to one of ours.
    assert f"registered as newstag-tiny-transformer version {tiny_transformer['version']}" in err
    assert "registered model" not in err.lower() and "Created version" not in err


def test_reload_gives_identical_probabilities_and_label_order(tiny_transformer):
    from newstag_model.load import load
    from train.evaluate import proba_from_output

    model_dir = os.path.join(mlflow.artifacts.download_artifacts(tiny_transformer["model_uri"]), "artifacts", "model")
    for runtime in ("torch", None):  # None: the runtime the config logged (onnx-int8 here)
        pyfunc = mlflow.pyfunc.load_model("models:/newstag-tiny-transformer@candidate",
                                          model_config={"runtime": runtime} if runtime else None)
        labels, proba = proba_from_output(pyfunc.predict(pd.DataFrame({"text": TEXTS})))
        assert labels == ("claim", "attributed_quote", "unverified", "official_response")
        np.testing.assert_array_equal(load(model_dir, runtime=runtime).predict_proba(TEXTS), proba)
    files = set(os.listdir(model_dir)) | set(os.listdir(os.path.join(model_dir, "encoder")))
    assert {"head.safetensors", "model.safetensors", "meta.json", "model.onnx", "model.int8.onnx"} <= files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pkl"))]


def test_the_same_sentences_scored_again_reuse_their_logits(tiny_transformer):
    """Training scores dev for the temperature and then for the report: the second pass must not run the encoder,
    and only the very same input set may be answered from memory."""
    from newstag_model.load import load

    model_dir = os.path.join(mlflow.artifacts.download_artifacts(tiny_transformer["model_uri"]), "artifacts", "model")
    clf = load(model_dir, runtime="torch")
    first = clf.predict_proba(TEXTS)
    clf.model = None  # no encoder left: only remembered logits can answer
    np.testing.assert_array_equal(clf.predict_proba(TEXTS), first)
    with pytest.raises(TypeError):
        clf.predict_proba(TEXTS[:-1])


@pytest.mark.parametrize("runtime", ["torch", "torch-bf16", "torch-int8", "onnx"])
def test_scores_do_not_depend_on_the_batch(tiny_transformer, runtime):
    """A sentence alone, in one batch with all others, or in batches of other sizes and orders scores the same.
    (ONNX int8 dynamic quantisation scales activations per batch, so that runtime is excluded by design; torch-int8
    scales them per token.)"""
    from newstag_model.load import load

    model_dir = os.path.join(mlflow.artifacts.download_artifacts(tiny_transformer["model_uri"]), "artifacts", "model")
    clf = load(model_dir, runtime=runtime)
    alone = np.vstack([clf.predict_proba([t]) for t in TEXTS])
    np.testing.assert_allclose(clf.predict_proba(TEXTS), alone, rtol=0, atol=1e-6)
    clf.batch_size = 3
    order = np.random.default_rng(0).permutation(len(TEXTS))
    np.testing.assert_allclose(clf.predict_proba([TEXTS[i] for i in order]), alone[order], rtol=0, atol=1e-6)


def test_tokenizers_alone_give_the_training_token_ids(tiny_transformer):
    """Inference encodes with `tokenizers` only; training encoded with transformers' tokenizer: same ids."""
    from transformers import AutoTokenizer

    from newstag_model.encoding import encoder_tokenizer

    encoder = os.path.join(mlflow.artifacts.download_artifacts(tiny_transformer["model_uri"]), "artifacts", "model",
                           "encoder")
    tokenizer, sep = encoder_tokenizer(Path(encoder), max_length=12)
    reference = AutoTokenizer.from_pretrained(encoder)
    pairs = [f"{t} {sep} {u}" for t, u in zip(TEXTS, TEXTS[1:] + TEXTS[:1])]
    expected = reference(TEXTS, pairs, truncation="longest_first", max_length=12)["input_ids"]
    assert sep == reference.sep_token
    assert [e.ids for e in tokenizer.encode_batch(list(zip(TEXTS, pairs)))] == expected
    assert [e.ids for e in tokenizer.encode_batch(TEXTS)] == reference(TEXTS, truncation=True, max_length=12)["input_ids"]


def test_onnx_runtime_loads_without_torch_or_transformers(tiny_transformer):
    """Importing torch and transformers costs seconds of every `newstag tag` start; the ONNX path needs neither."""
    code = (
        "import sys, mlflow, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model({tiny_transformer['model_uri']!r}, model_config={{'runtime': 'onnx'}})\n"
        "m.predict(pd.DataFrame({'text': ['The ministry denied it.']}))\n"
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_onnx_runtimes_agree_with_torch(tiny_transformer):
    from newstag_model.load import load

    model_dir = os.path.join(mlflow.artifacts.download_artifacts(tiny_transformer["model_uri"]), "artifacts", "model")
    torch_p = load(model_dir, runtime="torch").predict_proba(TEXTS)
    onnx_p = load(model_dir, runtime="onnx").predict_proba(TEXTS)
    int8_p = load(model_dir, runtime="onnx-int8").predict_proba(TEXTS)
    assert np.abs(torch_p - onnx_p).max() < 1e-4
    assert (torch_p.argmax(1) == onnx_p.argmax(1)).all()
    assert np.abs(torch_p - int8_p).max() < 0.1  # quantised: close, not equal


def test_loads_offline_without_pickle(tiny_transformer):
    code = (
        "import mlflow, pandas as pd\n"
        f"m = mlflow.pyfunc.load_model({tiny_transformer['model_uri']!r}, model_config={{'runtime': 'onnx'}})\n"
        "print(len(m.predict(pd.DataFrame({'text': ['The ministry denied it.']}))))\n"
    )
    env = {**os.environ, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false", "HF_HUB_OFFLINE": "1",
           "HF_ENDPOINT": "http://127.0.0.1:9"}  # any hub access would fail loudly
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "1"


def test_tag_with_transformer_and_onnx_runtime(tmp_path, tiny_transformer):
    src = tmp_path / "d.jsonl"
    src.write_text('{"id": "x", "text": "The ministry denied it. Police said two people died."}\n')
    out = tmp_path / "o.jsonl"
    run_cli("tag", src, "-o", out, "--model", "models:/newstag-tiny-transformer@candidate", "--runtime", "onnx", check=True)
    rows = pd.read_json(out, lines=True)
    assert len(rows) == 2 and (rows["model_version"].astype(str) == "1").all()


def test_threads_reach_the_runtime_through_the_model_config(tiny_transformer):
    """`newstag tag --workers` splits the cores through model_config["threads"]: MLflow drops keys a model did
    not declare at log time, silently for the runtime, so the value is checked where it lands."""
    import torch

    model = mlflow.pyfunc.load_model(tiny_transformer["model_uri"], model_config={"runtime": "onnx", "threads": 1})
    session = model.unwrap_python_model().classifier.session
    assert session.get_session_options().intra_op_num_threads == 1
    before = torch.get_num_threads()
    try:
        mlflow.pyfunc.load_model(tiny_transformer["model_uri"], model_config={"runtime": "torch", "threads": 1})
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    default = mlflow.pyfunc.load_model(tiny_transformer["model_uri"], model_config={"runtime": "onnx"})
    assert default.unwrap_python_model().classifier.session.get_session_options().intra_op_num_threads == 0


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_worker_processes_with_one_thread_each_give_the_same_rows(tmp_path, tiny_transformer, runtime):
    """--workers 2 splits the cores (one intra-op thread a worker) and the chunks; the rows are one process's, which
    is what the default runs for a transformer."""
    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"id": f"a{i}", "title": "Council vote", "text": f"{TEXTS[i % len(TEXTS)]} "
                                       f"{TEXTS[(i + 3) % len(TEXTS)]}"}) + "\n" for i in range(12)))
    outs = []
    for workers in ([], ["--workers", "2"]):  # the default (auto) is one process for a transformer
        out = tmp_path / f"o{len(workers)}.jsonl"
        proc = run_cli("tag", src, "-o", out, "--model", "models:/newstag-tiny-transformer@candidate", "--runtime",
                       runtime, "--chunk-size", "5", *workers, check=True)
        assert last_json(proc.stdout)["workers"] == (2 if workers else 1)
        outs.append(pd.read_json(out, lines=True))
    assert len(outs[0]) == 24 and outs[0]["article_id"].tolist() == outs[1]["article_id"].tolist()
    pd.testing.assert_frame_equal(outs[0], outs[1], check_exact=False, rtol=0, atol=1e-6)


CUES = {"claim": "flooded", "attributed_quote": "said", "unverified": "reportedly", "official_response": "denied"}
FILLER = ["the", "river", "council", "market", "town", "week", "police", "company", "city", "report", "mayor", "road"]


def separable_corpus(path, n_articles=48, seed=0):
    """Four sentences an article, one per label, told apart by one cue word among shared filler words."""
    rng = np.random.default_rng(seed)
    rows = []
    for a in range(n_articles):
        split = "train" if a < 32 else "dev" if a < 40 else "test"
        for i, label in enumerate(rng.permutation(list(CUES))):
            words = list(rng.choice(FILLER, 5))
            words.insert(int(rng.integers(0, 6)), CUES[label])
            rows.append({"text": " ".join(words).capitalize() + ".", "label": str(label), "article_id": f"a{a}",
                         "sentence_index": i, "split": split})
    pd.DataFrame(rows).to_json(path, orient="records", lines=True)
    return [r["text"] for r in rows]


@pytest.mark.parametrize(("runtime", "atol"), [("torch-bf16", 0.02), ("torch-int8", 0.05)])
def test_reduced_precision_runtimes_follow_fp32(tiny_transformer, runtime, atol):
    """bf16 and int8 linear layers built at load time from the logged fp32 weights: close to fp32, not equal (a
    runtime that silently ran fp32 would fail the second assertion)."""
    from newstag_model.load import load

    model_dir = os.path.join(mlflow.artifacts.download_artifacts(tiny_transformer["model_uri"]), "artifacts", "model")
    exact, reduced = (load(model_dir, runtime=r).predict_proba(TEXTS) for r in ("torch", runtime))
    assert np.abs(reduced - exact).max() < atol
    assert np.abs(reduced - exact).max() > 1e-7
    assert (reduced.argmax(1) == exact.argmax(1)).mean() >= 0.9


def test_bf16_products_give_a_row_the_same_bits_in_any_batch_and_thread_count():
    """torch-bf16 scores a sentence the same whichever sentences share its batch.  With all-mpnet-base-v2's layer
    sizes on an AMX Xeon, oneDNN's blocking follows the row count: one row came out differently alone and among
    999 others until every product got the same number of rows (on CPUs whose kernels ignore the row count this
    holds either way)."""
    from types import SimpleNamespace

    import torch

    from newstag_model.runtime import reduced_precision

    class FeedForward(torch.nn.Module):  # a BERT-style intermediate block: its bf16 output feeds the activation
        def __init__(self):
            super().__init__()
            self.dense, self.intermediate_act_fn = torch.nn.Linear(768, 3072), torch.nn.GELU()

        def forward(self, x):
            return self.intermediate_act_fn(self.dense(x))

    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Linear(768, 2304), torch.nn.Linear(2304, 768), torch.nn.Linear(768, 768),
                                  FeedForward(), torch.nn.Linear(3072, 768))  # MPNet's q/k/v, ..., feed-forward out
    exact = encoder(rows := torch.randn(1000, 768)).detach()
    reduced = reduced_precision(SimpleNamespace(encoder=encoder), "torch-bf16").encoder
    threads = torch.get_num_threads()
    with torch.inference_mode():
        together = reduced(rows)
        assert 0 < (together - exact).abs().max() < 0.05 * exact.abs().max()  # bf16, close to fp32
        for part in (slice(0, 1), slice(500, 537), slice(100, 400), slice(1, 1000)):
            np.testing.assert_array_equal(reduced(rows[part]).numpy(), together[part].numpy())
        try:
            torch.set_num_threads(1)
            np.testing.assert_array_equal(reduced(rows).numpy(), together.numpy())
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_mpnet(tmp_path_factory):
    """A random two-layer MPNet as transformers computes it, saved as a logged encoder is (pooler included)."""
    import torch
    from transformers import MPNetConfig, MPNetModel

    torch.manual_seed(0)
    model = MPNetModel(MPNetConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                   intermediate_size=128)).eval()
    path = tmp_path_factory.mktemp("mpnet")
    model.save_pretrained(path)
    ids = torch.randint(5, 100, (6, 9))
    mask = torch.ones_like(ids)
    mask[5, 6:] = 0  # one padded row
    ids[5, 6:] = 1  # MPNet's padding token
    return model, path, ids, mask


def test_plain_mpnet_encoder_computes_what_transformers_does(tiny_mpnet):
    """The reduced runtimes build MPNet without transformers (~1.7 s less start-up): the same fp32 outputs, padded
    rows included, and in packed passes of several lengths."""
    import torch

    from newstag_model.encoder import mpnet_encoder

    model, path, ids, mask = tiny_mpnet
    encoder = mpnet_encoder(path)
    with torch.inference_mode():
        exact = model(input_ids=ids, attention_mask=mask).last_hidden_state
        plain = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        # sentences of several lengths in one packed pass: each as transformers computes it alone
        groups = [ids[:2], ids[2:5, :4], ids[5:, :6]]
        packed = encoder.forward_packed(groups)
        alone = torch.cat([model(input_ids=g).last_hidden_state.reshape(-1, packed.shape[1]) for g in groups])
    assert exact.abs().max() > 1
    np.testing.assert_allclose(plain[mask.bool()].numpy(), exact[mask.bool()].numpy(), atol=2e-5)
    np.testing.assert_allclose(packed.numpy(), alone.numpy(), atol=2e-5)


@pytest.mark.parametrize(("runtime", "atol"), [("torch-bf16", 0.05), ("torch-int8", 0.1)])
@pytest.mark.parametrize("plain", [False, True])
def test_mpnet_attention_of_the_reduced_runtimes_follows_the_eager_one(tiny_mpnet, runtime, atol, plain):
    """The default encoder's self-attention, rebuilt by the reduced runtimes (q, k, v in one product, torch's fused
    attention), gives what transformers' eager MPNet gives up to bf16 / int8 rounding, padded rows included, and
    (bf16) the same bits for an article alone or among others; so does the plain-torch MPNet they load."""
    import copy
    from types import SimpleNamespace

    import torch

    from newstag_model.encoder import mpnet_encoder
    from newstag_model.runtime import reduced_precision

    eager, path, ids, mask = tiny_mpnet
    source = mpnet_encoder(path) if plain else copy.deepcopy(eager)
    reduced = reduced_precision(SimpleNamespace(encoder=source), runtime).encoder
    with torch.inference_mode():
        exact = eager(input_ids=ids, attention_mask=mask).last_hidden_state
        out = reduced(input_ids=ids, attention_mask=mask).last_hidden_state
        rounding = (out[:5] - exact[:5]).abs().max()  # unpadded rows: bf16 / int8 rounding alone
        assert 0 < rounding < atol * exact.abs().max()
        assert (out[5, :6] - exact[5, :6]).abs().max() < 2 * rounding  # the padding is masked out
        if runtime == "torch-bf16":
            alone = reduced(input_ids=ids[2:3], attention_mask=mask[2:3]).last_hidden_state
            np.testing.assert_array_equal(alone.numpy(), out[2:3].numpy())


@pytest.fixture(scope="module")
def mpnet_model_dir(tiny_transformer, tmp_path_factory):
    """The tiny logged model with a random two-layer MPNet (the default's architecture) as its encoder."""
    import shutil

    import torch
    from transformers import MPNetConfig, MPNetModel

    model_dir = tmp_path_factory.mktemp("mpnet-model") / "model"
    shutil.copytree(os.path.join(mlflow.artifacts.download_artifacts(tiny_transformer["model_uri"]), "artifacts",
                                 "model"), model_dir)
    bert = json.loads((model_dir / "encoder" / "config.json").read_text())
    torch.manual_seed(0)  # the tiny BERT's sizes, so its head and tokenizer fit
    MPNetModel(MPNetConfig(**{k: bert[k] for k in ("vocab_size", "hidden_size", "num_attention_heads",
                                                   "intermediate_size", "max_position_embeddings")},
                           num_hidden_layers=2)).save_pretrained(model_dir / "encoder")
    return model_dir


def test_an_mpnet_model_loads_for_torch_bf16_without_transformers(mpnet_model_dir):
    """A logged model whose encoder is MPNet (the default's architecture) scores in ``torch-bf16`` without importing
    transformers, close to what transformers' fp32 MPNet gives (``torch``)."""
    model_dir = mpnet_model_dir
    code = ("import sys, json\nfrom newstag_model.load import load\n"
            f"p = load({str(model_dir)!r}, runtime='torch-bf16').predict_proba({TEXTS!r})\n"
            "print(json.dumps({'transformers': 'transformers' in sys.modules, 'p': p.tolist()}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["transformers"] is False
    from newstag_model.load import load

    exact = load(model_dir, runtime="torch").predict_proba(TEXTS)
    assert 0 < np.abs(np.array(out["p"]) - exact).max() < 0.02


@pytest.mark.parametrize("runtime", ["torch-bf16", "torch-int8"])
def test_packed_calls_score_what_one_length_batches_score(mpnet_model_dir, runtime, monkeypatch):
    """The reduced runtimes run sentences of many lengths through MPNet in one call (every product on all their
    tokens, attention per length): the scores of one-length batches, and of each sentence alone, when the calls are
    cut anywhere."""
    from newstag_model.context import with_context
    from newstag_model.load import load

    clf = load(mpnet_model_dir, runtime=runtime)
    ids, owners = clf.encode(with_context(TEXTS, **clf.context))
    assert clf.packed and owners is None and len({len(i) for i in ids}) > 3
    packed = clf.predict_proba(TEXTS)
    alone = np.vstack([clf.predict_proba([t]) for t in TEXTS])
    monkeypatch.setattr("newstag_model.transformer.PACKED_ROWS", 20)  # calls of a sentence or two, length groups split
    order = np.random.default_rng(0).permutation(len(TEXTS))
    cut = clf.predict_proba([TEXTS[i] for i in order])
    clf.packed, clf._last = False, None
    unpacked = clf.predict_proba(TEXTS)
    for other in (alone, cut[np.argsort(order)], unpacked):
        np.testing.assert_allclose(other, packed, rtol=0, atol=1e-6)
    assert np.abs(packed - load(mpnet_model_dir, runtime="torch").predict_proba(TEXTS)).max() > 1e-7


@pytest.mark.parametrize("runtime", ["torch-bf16", "torch-int8"])
def test_packed_calls_score_article_chunks_as_one_chunk_calls_do(mpnet_model_dir, runtime, tmp_path, monkeypatch):
    """A model that reads articles in chunks (context.chunk_tokens) through the reduced runtimes' packed MPNet: each
    sentence's scores are those of calls of one chunk length, and of its article alone, wherever the calls are cut."""
    import shutil

    from newstag_model.context import with_context
    from newstag_model.load import load
    from newstag_model.schema import read_meta, write_meta

    model_dir = tmp_path / "model"
    shutil.copytree(mpnet_model_dir, model_dir)
    meta = read_meta(model_dir)
    write_meta(model_dir, {**meta, "context": {**meta["context"], "chunk_tokens": 80}})
    frame = pd.DataFrame({"text": TEXTS, "article_id": [f"a{i // 5}" for i in range(len(TEXTS))],
                          "sentence_index": [i % 5 for i in range(len(TEXTS))], "title": "The river burst its banks"})
    clf = load(model_dir, runtime=runtime)  # (no unknown word: the tiny vocabulary's [UNK] is MPNet's pad)
    ids, _ = clf.encode(with_context(frame, **clf.context))
    assert clf.packed and len(ids) < len(frame) and len({len(i) for i in ids}) > 3
    packed = clf.predict_proba(frame)
    alone = np.vstack([clf.predict_proba(frame[frame["article_id"] == a]) for a in frame["article_id"].unique()])
    monkeypatch.setattr("newstag_model.transformer.PACKED_ROWS", 30)  # a chunk or two a call
    cut = clf.predict_proba(frame.iloc[::-1])[::-1]
    clf.packed, clf._last = False, None
    for name, other in (("alone", alone), ("cut", cut), ("unpacked", clf.predict_proba(frame))):
        np.testing.assert_allclose(other, packed, rtol=0, atol=1e-6, err_msg=name)
    assert np.abs(packed - load(model_dir, runtime="torch").predict_proba(frame)).max() < 0.05


def test_auto_runtime_is_bf16_on_native_bf16_cpus_else_onnx_else_torch(tiny_transformer, tmp_path, monkeypatch):
    """`auto` gives exactly what the runtime it stands for gives: torch-bf16 with native bf16, else ONNX fp32, else
    (a model without a graph) torch."""
    import shutil

    from newstag_model.load import load

    model_dir = tmp_path / "model"
    shutil.copytree(os.path.join(mlflow.artifacts.download_artifacts(tiny_transformer["model_uri"]), "artifacts",
                                 "model"), model_dir)
    expected = {r: load(model_dir, runtime=r).predict_proba(TEXTS) for r in ("torch-bf16", "onnx", "torch")}
    assert np.abs(expected["torch-bf16"] - expected["onnx"]).max() > 1e-7  # the three are told apart
    for native, runtime in ((True, "torch-bf16"), (False, "onnx")):
        monkeypatch.setattr("newstag_model.runtime.native_bf16", lambda native=native: native)
        clf = load(model_dir, runtime="auto")
        assert clf.runtime == runtime
        np.testing.assert_array_equal(clf.predict_proba(TEXTS), expected[runtime])
    (model_dir / "model.onnx").unlink()
    clf = load(model_dir, runtime="auto")
    assert clf.runtime == "torch"
    np.testing.assert_array_equal(clf.predict_proba(TEXTS), expected["torch"])


def test_native_bf16_reads_the_cpu_flags(tmp_path):
    import torch

    from newstag_model.runtime import native_bf16

    cpuinfo = tmp_path / "cpuinfo"
    for flags, native in (("fpu avx2 avx512f avx512_vnni", False), ("fpu avx512f avx512_bf16", True),
                          ("fpu amx_tile amx_bf16 amx_int8", True)):
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
        assert native_bf16(str(cpuinfo)) is native
    assert native_bf16(str(tmp_path / "absent")) is False
    if os.path.exists("/proc/cpuinfo"):  # this machine: the flags agree with torch's own check
        assert native_bf16() == (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def fit_separable(tmp_path, keys: str, log_step=None):
    """The tiny BERT trained twelve epochs on the separable corpus, `keys` added to its model section: the config,
    splits, BERT directory, the saved model as loaded, and its accuracy on the 32 test sentences (8 unseen articles)."""
    from tiny_transformer import build_tiny_bert

    from newstag_model.load import load
    from train import transformer
    from train.config import load_config
    from train.data import load_splits
    from train.metrics import Evaluator

    bert = build_tiny_bert(tmp_path / "bert", separable_corpus(tmp_path / "separable.jsonl"))
    cfg = load_config(tiny_transformer_config(
        tmp_path / "separable.yaml", tmp_path / "separable.jsonl", bert, "epochs: 12, batch_size: 16,"
        f" learning_rate: 3.0e-3, max_length: 32, early_stopping_patience: null, runtime: torch, {keys}",
        # the cue is in the sentence; its neighbours (the shipped window 1) carry the other labels' cues
        "context: {window: 0}\n"))
    splits = load_splits(cfg)
    transformer.fit(cfg, splits, tmp_path / "model", log_step)
    clf = load(tmp_path / "model")  # as saved: encoder, head, temperature
    scores = Evaluator(cfg.labels).scores(splits.test["label"].tolist(), clf.predict_proba(splits.test), "test")
    assert len(splits.test) == 32
    return cfg, splits, bert, clf, scores["test/accuracy"]


def test_tiny_transformer_learns_a_separable_task(tmp_path):
    """Trained on 32 articles, it must label the 32 sentences of 8 unseen articles (held-out test split)."""
    from newstag_model.probability import softmax
    from train import metrics

    logged = {}
    cfg, splits, _, clf, accuracy = fit_separable(tmp_path, "export_onnx: false, train_precision: fp32",
                                                  lambda values, step=None: logged.update(values))
    assert accuracy >= 0.9
    # Calibration reuses the dev logits of the evaluation that chose the kept epoch (no further dev pass): they must
    # be the saved model's own.  Twelve epochs, the best an early one: a later epoch's logits give another ECE.
    own = softmax(clf.logits(splits.dev).astype(np.float64))
    ece = metrics.expected_calibration_error(splits.dev["label"].tolist(), own, cfg.labels)
    assert logged["calibration/dev_ece_before"] == pytest.approx(ece, abs=1e-6)


def test_frozen_layers_keep_their_weights_and_bf16_training_learns(tmp_path):
    """`freeze_layers: 1`: the embeddings and the first block stay exactly as pretrained, the second learns; bf16
    autocast training still learns the separable task, and its ONNX graph is fp32 (ONNX Runtime has no bf16 MatMul
    on the CPU: tracing the autocast wrapper the Trainer leaves on forward gave a graph that does not load)."""
    import torch
    from safetensors.torch import load_file

    from newstag_model.load import load

    _, splits, bert, clf, accuracy = fit_separable(tmp_path, "freeze_layers: 1, train_precision: bf16, dropout: 0.0")
    saved = json.loads((tmp_path / "model" / "encoder" / "config.json").read_text())
    assert saved["hidden_dropout_prob"] == saved["attention_probs_dropout_prob"] == 0.0  # `dropout` reached the encoder
    before, after = load_file(bert / "model.safetensors"), load_file(tmp_path / "model" / "encoder" / "model.safetensors")
    frozen = [k for k in before if ".embeddings." in f".{k}" or ".layer.0." in f".{k}"]
    learned = [k for k in before if ".layer.1." in f".{k}"]
    assert frozen and learned
    assert all(torch.equal(before[k], after[k]) for k in frozen)
    assert all(not torch.equal(before[k], after[k]) for k in learned if k.endswith("weight"))
    assert accuracy >= 0.9
    onnx = load(tmp_path / "model", runtime="onnx").predict_proba(splits.test)
    np.testing.assert_allclose(onnx, clf.predict_proba(splits.test), rtol=0, atol=1e-4)


def test_encoder_layers_trains_and_logs_the_lower_blocks_only(tmp_path):
    """`encoder_layers: 1` of the tiny BERT's two: the saved encoder is one block deep (config and weights), it loads
    as such, still learns the separable task, and its ONNX graph scores as the torch model does."""
    from safetensors.torch import load_file

    from newstag_model.load import load

    _, splits, _, clf, accuracy = fit_separable(tmp_path, "encoder_layers: 1")
    encoder = tmp_path / "model" / "encoder"
    assert json.loads((encoder / "config.json").read_text())["num_hidden_layers"] == 1
    saved = load_file(encoder / "model.safetensors")
    assert any(".layer.0." in k for k in saved) and not any(".layer.1." in k for k in saved)
    assert len(clf.model.encoder.encoder.layer) == 1
    assert accuracy >= 0.9
    onnx = load(tmp_path / "model", runtime="onnx").predict_proba(splits.test)
    np.testing.assert_allclose(onnx, clf.predict_proba(splits.test), rtol=0, atol=1e-4)


def test_dropout_zero_makes_training_mode_deterministic(tmp_path):
    """`model.dropout: 0` replaces every dropout probability of the checkpoint's config: in training mode two passes
    then agree exactly; the checkpoint's own (0.1) makes them differ."""
    import torch
    from tiny_transformer import build_tiny_bert

    from train import pretrained

    bert = str(build_tiny_bert(tmp_path / "bert", ["a b c d e f"]))
    ids = torch.tensor([[2, 5, 6, 7, 8, 3]])
    for dropout, same in ((0.0, True), (None, False)):
        _, encoder = pretrained.load(bert, dropout)
        encoder.train()
        first, second = (encoder(input_ids=ids).last_hidden_state for _ in range(2))
        assert torch.equal(first, second) is same


def test_keeping_or_freezing_more_layers_than_the_encoder_has_names_the_key(tmp_path):
    from tiny_transformer import build_tiny_bert

    from train import layers, pretrained
    from train.config import ConfigError

    _, encoder = pretrained.load(str(build_tiny_bert(tmp_path / "bert", ["a b c"])))
    with pytest.raises(ConfigError, match=r"model.freeze_layers: 9 is more than the \d+ layers"):
        layers.freeze_lower(encoder, 9)
    with pytest.raises(ConfigError, match=r"model.encoder_layers: 3 is more than the 2 layers"):
        layers.keep_lower(encoder, 3)
    layers.keep_lower(encoder, 1)  # then freezing both of the two it had is too many
    with pytest.raises(ConfigError, match=r"model.freeze_layers: 2 is more than the 1 layers"):
        layers.freeze_lower(encoder, 2)


def test_a_job_pins_the_runtime_auto_resolved_to(tmp_path, tiny_transformer):
    """The job manifest records the runtime the model computes with, so resuming where `auto` means another runtime
    (another CPU kind) is refused instead of mixing the two runtimes' rows in one output."""
    from infer.job import Job, JobError
    from infer.tagger import Tagger
    from newstag_model.runtime import native_bf16

    src = tmp_path / "d.jsonl"
    src.write_text("".join(json.dumps({"id": f"a{i}", "text": t}) + "\n" for i, t in enumerate(TEXTS)))
    out, uri = tmp_path / "o.jsonl", "models:/newstag-tiny-transformer@candidate"
    resolved = "torch-bf16" if native_bf16() else "onnx"
    proc = run_cli("tag", src, "-o", out, "--model", uri, "--runtime", "auto", "--chunk-size", "2", "--workers", "1",
                   env={"NEWSTAG_CRASH_AT": "chunk-1"})
    assert proc.returncode == -9
    assert json.loads((tmp_path / "o.jsonl.parts" / "manifest.json").read_text())["runtime"] == resolved
    assert Tagger(uri, runtime="auto").runtime == resolved
    other = Tagger(uri, runtime="onnx" if resolved == "torch-bf16" else "torch-bf16")
    with pytest.raises(JobError, match=f"runtime was '{resolved}'"):
        Job([str(src)], str(out), other, resume=True, chunk_size=2).run()
    run_cli("tag", src, "-o", out, "--model", uri, "--runtime", "auto", "--chunk-size", "2", "--workers", "1",
            "--resume", check=True)
    assert len(pd.read_json(out, lines=True)) >= len(TEXTS)


def test_layer_lr_decay_gives_each_block_its_rate(tmp_path):
    """`layer_lr_decay: 0.5` on a two-block encoder: the head learns at the full rate, the top block at half, the
    lowest block and the embeddings at a quarter; frozen parameters get no group, biases and LayerNorms no weight
    decay; and the warm-up scales every group alike."""
    from tiny_transformer import build_tiny_bert
    from transformers import TrainingArguments

    from newstag_model.encoder import encoder_classifier
    from train import pretrained, transformer

    _, encoder = pretrained.load(str(build_tiny_bert(tmp_path / "bert", ["a b c d"])), 0.0)
    model = encoder_classifier(encoder, 4, "mean", 0.0)
    model.encoder.embeddings.position_embeddings.requires_grad_(False)  # as frozen: no group
    args = TrainingArguments(output_dir=str(tmp_path / "out"), learning_rate=1e-3, weight_decay=0.01, use_cpu=True,
                             report_to="none", warmup_steps=4, max_steps=8)
    trainer = transformer.WeightedTrainer(model=model, args=args, layer_lr_decay=0.5)
    trainer.create_optimizer_and_scheduler(num_training_steps=8)
    lr_of = {id(p): (g["initial_lr"], g["weight_decay"]) for g in trainer.optimizer.param_groups for p in g["params"]}
    names = dict(model.named_parameters())
    expected = {"head.weight": 1e-3, "encoder.encoder.layer.1.output.dense.weight": 5e-4,
                "encoder.encoder.layer.0.attention.self.query.weight": 2.5e-4,
                "encoder.embeddings.word_embeddings.weight": 2.5e-4}
    for name, rate in expected.items():
        assert lr_of[id(names[name])] == (pytest.approx(rate), 0.01), name
    assert lr_of[id(names["encoder.encoder.layer.1.output.LayerNorm.weight"])] == (pytest.approx(5e-4), 0.0)
    assert id(names["encoder.embeddings.position_embeddings.weight"]) not in lr_of
    trainer.optimizer.step()  # no gradients yet: moves nothing, but keeps the optimizer-then-schedule order
    trainer.lr_scheduler.step()
    rates = sorted({g["lr"] for g in trainer.optimizer.param_groups})
    assert rates == pytest.approx([2.5e-4 / 4, 5e-4 / 4, 1e-3 / 4])  # step 1 of a 4-step warm-up


def test_label_smoothing_softens_the_training_loss_only(tmp_path):
    """`label_smoothing: 0.2`: in training each sentence's loss is 0.8 x its cross-entropy + 0.2 x the mean of every
    label's negative log-probability, weighted by class and origin as before; in evaluation the plain cross-entropy."""
    import torch
    from tiny_transformer import build_tiny_bert
    from transformers import TrainingArguments

    from newstag_model.encoder import encoder_classifier
    from train import pretrained, transformer

    _, encoder = pretrained.load(str(build_tiny_bert(tmp_path / "bert", ["a b c d e f"])), 0.0)
    model = encoder_classifier(encoder, 4, "mean", 0.0)
    torch.manual_seed(0)
    model.head.weight.data.normal_(0, 20.0)  # confident logits, where smoothing moves the loss most
    inputs = {"input_ids": torch.tensor([[2, 5, 6, 3], [2, 7, 8, 3], [2, 9, 3, 0]]),
              "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]])}
    labels, origin = torch.tensor([0, 1, 3]), torch.tensor([1.0, 0.5, 2.0])
    class_weights = torch.tensor([1.0, 2.0, 1.0, 0.5])
    args = TrainingArguments(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none")
    trainer = transformer.WeightedTrainer(model=model, args=args, class_weights=class_weights, label_smoothing=0.2)
    with torch.no_grad():
        log_p = torch.log_softmax(model(**inputs)["logits"], dim=1)
        weight = class_weights[labels] * origin
        plain = -log_p[torch.arange(3), labels]
        smooth = 0.8 * plain + 0.2 * -log_p.mean(dim=1)
        for training, per_item in ((True, smooth), (False, plain)):
            model.train(training)
            loss = trainer.compute_loss(model, {**inputs, "labels": labels, "weight": origin})
            assert loss.item() == pytest.approx(((per_item * weight).sum() / weight.sum()).item(), rel=1e-5)
    assert (smooth - plain).abs().min().item() > 0.05


def test_target_pooling_averages_the_target_sentence_through_its_separator(tmp_path):
    """`pooling: target`: the head reads the mean of the first segment's hidden states ([CLS] through the first
    [SEP]); the context after it counts only through attention.  A row without a separator is all target."""
    import torch
    from tiny_transformer import build_tiny_bert
    from transformers import AutoModel

    from newstag_model.encoder import encoder_classifier

    bert = build_tiny_bert(tmp_path / "bert", ["a b c d e f"])
    encoder = AutoModel.from_pretrained(bert)
    ids = torch.tensor([[2, 5, 6, 3, 7, 8, 3, 0], [2, 5, 6, 7, 8, 9, 10, 5]])  # [CLS] a b [SEP] c d [SEP] [PAD]
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1, 0], [1] * 8])
    models = {p: encoder_classifier(encoder, 4, p, 0.0, sep_token_id=3).eval() for p in ("target", "mean")}
    models["mean"].head.load_state_dict(models["target"].head.state_dict())
    with torch.no_grad():
        hidden = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        target, mean = (models[p](ids, mask)["logits"] for p in ("target", "mean"))
        head = models["target"].head
        torch.testing.assert_close(target[0], head(hidden[0, :4].mean(0)))
        torch.testing.assert_close(mean[0], head(hidden[0, :7].mean(0)))
        assert not torch.allclose(target[0], mean[0], atol=1e-4)
        torch.testing.assert_close(target[1], mean[1])


def test_target_pooling_learns_and_its_onnx_graph_agrees(tmp_path):
    """Trained with `pooling: target` (sentence + empty context slots), saved and reloaded by its meta: it learns the
    separable task, and the exported graph computes the same pooling as torch."""
    from newstag_model.load import load
    from newstag_model.schema import read_meta

    _, splits, _, clf, accuracy = fit_separable(tmp_path, "pooling: target, train_precision: fp32")
    meta = read_meta(tmp_path / "model")
    assert (meta["pooling"], meta["sep_token_id"]) == ("target", 3)
    assert accuracy >= 0.9
    onnx = load(tmp_path / "model", runtime="onnx").predict_proba(splits.test)
    np.testing.assert_allclose(onnx, clf.predict_proba(splits.test), rtol=0, atol=1e-4)


def test_target_pooling_without_a_separator_token_names_the_key(tmp_path, monkeypatch):
    """A tokenizer with no separator (GPT-style) cannot mark where the target sentence ends: a config error before
    training, not a failed tensor comparison in the first step."""
    from tiny_transformer import build_tiny_bert

    from train import pretrained, transformer
    from train.config import ConfigError, load_config
    from train.data import load_splits

    bert = build_tiny_bert(tmp_path / "bert", separable_corpus(tmp_path / "separable.jsonl"))
    cfg = load_config(tiny_transformer_config(tmp_path / "t.yaml", tmp_path / "separable.jsonl", bert,
                                              "pooling: target, epochs: 1"))
    loaded = pretrained.load

    def without_separator(name, dropout=None):
        tokenizer, encoder = loaded(name, dropout)
        tokenizer.sep_token = None
        return tokenizer, encoder

    monkeypatch.setattr(pretrained, "load", without_separator)
    with pytest.raises(ConfigError, match="model.pooling: target .* has none; use mean"):
        transformer.fit(cfg, load_splits(cfg), tmp_path / "model")
    assert not (tmp_path / "model").exists()


def test_lora_trains_adapters_and_logs_a_plain_encoder(tmp_path):
    """`lora_rank` on the tiny BERT's upper block (the lower one frozen): it still learns the separable task; the saved
    encoder has exactly the checkpoint's tensors, the frozen block's unchanged and the adapted block's moved by the
    merged update; its ONNX graph scores as the torch model does."""
    from safetensors.torch import load_file

    from newstag_model.load import load

    _, splits, bert, clf, accuracy = fit_separable(tmp_path, "lora_rank: 8, lora_alpha: 32, freeze_layers: 1")
    assert accuracy >= 0.9
    before = load_file(bert / "model.safetensors")
    after = load_file(tmp_path / "model" / "encoder" / "model.safetensors")
    assert {k.removeprefix("bert.") for k in before} >= set(after) and not any("lora" in k for k in after)
    moved = {k for k in after if not np.array_equal(after[k].numpy(), before.get(k, before.get("bert." + k)).numpy())}
    products = {k for k in after if ".layer.1." in k and k.endswith(".weight") and "LayerNorm" not in k}
    assert len(products) == 6 and products <= moved, sorted(moved)  # q, k, v, attention output, intermediate, output
    assert all(".layer.1." in k and (k in products or "LayerNorm" in k) for k in moved), sorted(moved)  # biases frozen
    onnx = load(tmp_path / "model", runtime="onnx").predict_proba(splits.test)
    np.testing.assert_allclose(onnx, clf.predict_proba(splits.test), rtol=0, atol=1e-4)


def test_a_merged_adapter_computes_what_it_trained():
    import torch

    from train.lora import Adapted

    torch.manual_seed(0)
    base = torch.nn.Linear(8, 6)
    adapted = Adapted(base, rank=2, alpha=4.0, dtype=torch.float32)
    x = torch.randn(5, 8)
    assert torch.equal(adapted(x), base(x))  # B starts at zero: the checkpoint's own function
    with torch.no_grad():
        adapted.lora_b.normal_()
    trained = adapted(x)
    assert not torch.allclose(trained, base(x), atol=1e-3)
    torch.testing.assert_close(adapted.merged()(x), trained, rtol=0, atol=1e-5)
