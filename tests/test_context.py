"""Article context: the same input at train, evaluate, tag and serve time, and models that use it.

The task below cannot be solved from the sentence alone: the same continuation ("We are looking at every
option.") is a quote after a speaker's introduction and a response after a request for comment.
"""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, TEXTS, last_json, run_cli, write_rows
from tiny_transformer import build_tiny_bert

from newstag_model.context import own_voice, quoted_starts, with_context
from newstag_model.encoding import article_chunks, encoder_inputs, encoder_tokenizer
from newstag_model.load import load
from newstag_model.probability import pool_quote_spans, softmax
from newstag_model.schema import model_inputs, predictions_frame, read_meta
from train import baseline
from train.config import load_config
from train.data import load_splits

INTRO = {
    "attributed_quote": ("Minister Ana Ruiz spoke to reporters outside parliament on Tuesday.", "claim"),
    "official_response": ("The company was asked about the leaked memo on Tuesday.", "claim"),
}
CONTINUATIONS = ["We are looking at every option.", "Nothing has been decided yet.", "We will say more next week.",
                 "This is a difficult moment for everyone.", "Our priority is the people affected."]


def context_rows(n_articles: int = 40) -> list[dict]:
    rows = []
    for i in range(n_articles):
        label = ("attributed_quote", "official_response")[i % 2]
        intro, intro_label = INTRO[label]
        aid = f"c{i:02d}"
        split = "test" if i >= n_articles - 8 else "dev" if i >= n_articles - 16 else "train"
        title = "Minister speaks" if label == "attributed_quote" else "Company memo leaked"
        hedge = ("The memo is said to date from March.", "unverified")
        for k, (text, y) in enumerate([(intro, intro_label), (CONTINUATIONS[(i // 2) % 5], label), hedge]):
            rows.append({"text": text, "label": y, "article_id": aid, "sentence_index": k, "title": title,
                         "split": split, "origin": "real"})
    return rows


@pytest.fixture(scope="module")
def context_file(tmp_path_factory):
    return write_rows(tmp_path_factory.mktemp("ctx") / "context.jsonl", context_rows())


def config(path, *overrides):
    """The shipped baseline on `path`, one stage: each test here isolates a first-stage feature, which the second
    stage (tests/test_stacking.py) could stand in for by reading the neighbours' labels."""
    return load_config(ROOT / "configs/baseline.yaml", [f"data.path={path}", "model.C=100", "model.stack_window=0",
                                                        "model.tune_offsets=false", *overrides])


def test_with_context_orders_by_sentence_index_and_keeps_loose_rows_alone():
    frame = pd.DataFrame({"text": ["c", "a", "loose", "b"], "article_id": ["x", "x", None, "x"],
                          "sentence_index": [2, 0, 5, 1], "title": ["T", "T", "U", "T"]})
    out = with_context(frame, window=1, title=True)
    assert out["prev"].tolist() == ["b", "", "", "a"]
    assert out["next"].tolist() == ["", "b", "", "c"]
    assert out["title"].tolist() == ["T", "T", "U", "T"]
    wide = with_context(frame, window=2, title=False)
    assert wide.loc[0, "prev"] == "a b" and wide.loc[1, "next"] == "b c" and wide["title"].eq("").all()
    # Without sentence_index, file order decides.
    plain = with_context(frame.drop(columns="sentence_index"), window=1)
    assert plain["prev"].tolist() == ["", "c", "", "a"]


def test_neighbour_words_keep_the_words_nearest_the_target():
    frame = pd.DataFrame({"text": ["one two three", "four five", "six", "seven eight nine ten"], "article_id": "x",
                          "sentence_index": [0, 1, 2, 3]})
    out = with_context(frame, window=2, neighbour_words=3)
    assert out["prev"].tolist() == ["", "one two three", "three four five", "four five six"]
    assert out["next"].tolist() == ["four five six", "six seven eight", "seven eight nine", ""]
    assert out["text"].tolist() == frame["text"].tolist()  # the target itself is never cut
    whole = with_context(frame, window=2)
    assert whole["prev"].tolist()[2] == "one two three four five"


def continuation_accuracy(model_dir, frame) -> float:
    proba = load(model_dir).predict_proba(frame)
    predicted = np.array(predictions_frame(load(model_dir).labels, proba)["label"])
    mask = (frame["sentence_index"] == 1).to_numpy()
    return float((predicted[mask] == frame["label"].to_numpy()[mask]).mean())


def test_baseline_uses_context_that_a_lone_sentence_lacks(context_file, tmp_path):
    cfg = config(context_file, "context.window=1", "context.title=false")  # the titles alone would give it away
    splits = load_splits(cfg)
    baseline.fit(cfg, splits, tmp_path / "ctx")
    alone = config(context_file, "context.window=0", "context.title=false")
    baseline.fit(alone, load_splits(alone), tmp_path / "alone")
    test = splits.test
    assert continuation_accuracy(tmp_path / "ctx", test) == 1.0
    assert continuation_accuracy(tmp_path / "alone", test) <= 0.75  # a lone sentence carries no cue at all


def test_title_feature_without_titles_trains_a_title_blind_model(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "title"} for r in context_rows()]
    path = tmp_path / "untitled.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = config(path, "context.window=1", "context.title=true", "context.title_dropout=0")
    with pytest.warns(UserWarning, match="no train sentence .* has a title"):
        baseline.fit(cfg, load_splits(cfg), tmp_path / "m")
    assert read_meta(tmp_path / "m")["context"] == {"window": 1, "neighbour_words": 0, "title": False,
                                                    "quotes": False, "quote_spans": True, "voice": True}
    assert continuation_accuracy(tmp_path / "m", load_splits(cfg).test) == 1.0


def test_quoted_starts_follow_the_marks_from_sentence_to_sentence():
    article = ['"We have heard the concerns.', "We are looking at every option.", 'We will decide soon," she said.',
               "The vote is on Friday.", "\u201cIt is over.", "Nobody will stay.\u201d", "He left.",
               'She said: "Run." Then "Stop."', "Done.", '"Nothing (he said "never") is final.', "Ever."]
    assert quoted_starts(article) == [False, True, True, False, False, True, False, False, False, False,
                                      False]
    # A quotation left open runs three unmarked sentences at most: a stray mark does not make the rest speech.
    stray = ['He called it "the end.', "One.", "Two.", "Three.", "Four.", "Five."]
    assert quoted_starts(stray) == [False, True, True, True, False, False]


def test_quote_state_is_per_article_and_marks_the_transformer_input():
    frame = pd.DataFrame({"text": ["Later.", '"We came.', "We saw.", "We saw."],
                          "article_id": ["a", "a", "a", None], "sentence_index": [2, 0, 1, 0]})
    out = with_context(frame, quotes=True)
    assert out["quoted"].tolist() == ["quoted", "", "quoted", ""]  # the loose row stands alone
    assert with_context(frame)["quoted"].eq("").all()
    texts, pairs = encoder_inputs(out, "[SEP]", contextual=False)
    assert texts == ['"Later.', '"We came.', '"We saw.', "We saw."] and pairs is None


def quote_rows(n_articles: int = 40) -> list[dict]:
    """The same continuation is a quote after a sentence that opens one, and a claim after a plain sentence."""
    rows = []
    for i in range(n_articles):
        quoted = i % 2 == 0
        label = "attributed_quote" if quoted else "claim"
        first = 'Ruiz told reporters: "We spoke to the families.' if quoted else "Ruiz spoke to the families."
        split = "test" if i >= n_articles - 8 else "dev" if i >= n_articles - 16 else "train"
        sentences = [(first, label), (CONTINUATIONS[(i // 2) % 5], label),
                     ("The memo is said to date from March.", "unverified"),
                     ("The ministry declined to comment.", "official_response")]
        for k, (text, y) in enumerate(sentences):
            rows.append({"text": text, "label": y, "article_id": f"q{i:02d}", "sentence_index": k,
                         "split": split, "origin": "real"})
    return rows


def test_baseline_reads_the_quote_state_that_neither_sentence_shows(tmp_path):
    path = tmp_path / "quotes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in quote_rows()))
    accuracy = {}
    for quotes in (True, False):
        # no own-voice block: it too knows where a quotation runs (an open one leaves a continuation no voice)
        # nor one decision a quotation, which would lend the continuation its opening sentence's label
        cfg = config(path, "context.window=0", "context.title=false", f"context.quotes={str(quotes).lower()}",
                     "model.voice_weight=0", "context.quote_spans=false")
        baseline.fit(cfg, load_splits(cfg), tmp_path / str(quotes))
        accuracy[quotes] = continuation_accuracy(tmp_path / str(quotes), load_splits(cfg).test)
    assert read_meta(tmp_path / "True")["context"]["quotes"] is True
    assert accuracy[True] == 1.0 and accuracy[False] <= 0.75


def test_own_voice_is_the_text_outside_quotation_marks_across_sentences():
    assert own_voice('"We will rebuild," the mayor said, "every street."') == "the mayor said,"
    assert own_voice("It reportedly failed.") == "It reportedly failed."
    assert own_voice("\u201cIt allegedly failed,\u201d he said.") == "he said."
    assert own_voice('every street of it," she said. "And soon', inside=True) == "she said."
    frame = pd.DataFrame({"text": ['"We came.', 'We saw," she allegedly said.', 'We saw," she said.'],
                          "article_id": ["a", "a", None], "sentence_index": [0, 1, 0]})
    out = with_context(frame, voice=True)
    # the second row continues the first row's quotation; the loose third row starts outside any
    assert out["voice"].tolist() == ["", "she allegedly said.", "We saw, she said."]
    assert with_context(frame)["voice"].eq("").all()


CLAUSES = [("Rivera", "took the money"), ("Okafor", "signed a new contract"), ("Lindqvist", "hid the losses"),
           ("Moreau", "knew of the plan"), ("Tanaka", "opened the gate"), ("Adeyemi", "met the rebels"),
           ("Kowalski", "moved the funds"), ("Haddad", "quit on Monday"), ("Brennan", "ignored the warning"),
           ("Sato", "lied to the board"), ("Petrov", "sold the shares"), ("Quispe", "left the country"),
           ("Nakamura", "broke the seal"), ("Osei", "paid the guards"), ("Varga", "burned the files"),
           ("Delgado", "called the minister"), ("Fischer", "rigged the tender"), ("Mbeki", "skipped the hearing"),
           ("Olsen", "copied the keys"), ("Rahman", "forged the permit"), ("Castillo", "warned the press"),
           ("Novak", "hired the driver"), ("Ibrahim", "lost the ledger"), ("Yilmaz", "tipped off the buyer")]


WITNESSES = ["Abara", "Bexley", "Corvin", "Dunmore", "Eskola", "Faraday", "Galli", "Hoskins", "Ilves", "Jarvi",
             "Kinsella", "Lorca", "Mattila", "Nyberg", "Orsini", "Pakarinen", "Quaid", "Rautio", "Sorensen", "Tiller",
             "Uusitalo", "Vance", "Whitlock", "Zeller"]


def test_baseline_tells_a_hedge_in_the_article_voice_from_one_inside_a_quotation(tmp_path):
    """Guideline rule 3: "allegedly" in the article's voice makes a sentence `unverified`; inside a quotation the
    sentence stays the speaker's `attributed_quote`.  Both forms have the same words and the same marks, so only
    the own-voice block can tell them apart on sentences about people it has not seen."""
    rows = []
    for i in range(24):
        hedged = i % 2 == 0
        s1, p1 = CLAUSES[i]
        # what follows the hedge is shared by both labels: only where the quotation opens differs, and the word
        # after the opening mark is a name either way (a shared first word, "the", would give the mark away)
        said = ("Lee said", "Park told reporters", "Ng wrote on Friday", "Diaz added")[(i // 2) % 4]
        rest = f"{WITNESSES[i]} saw it all"
        text = (f'{s1} allegedly {p1}, "{rest}," {said}.' if hedged
                else f'"{s1} allegedly {p1}, {rest}," {said}.')
        split = "test" if i >= 18 else "dev" if i >= 14 else "train"
        others = [("The club declined to comment.", "official_response"), ("The season ends in May.", "claim")]
        for k, (sentence, y) in enumerate([(text, "unverified" if hedged else "attributed_quote"), *others]):
            rows.append({"text": sentence, "label": y, "article_id": f"h{i}", "sentence_index": k, "split": split,
                         "origin": "real"})
    path = tmp_path / "hedges.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    accuracy = {}
    for weight in (1.0, 0):
        cfg = config(path, "context.title=false", f"model.voice_weight={weight}")
        clf = baseline.fit(cfg, load_splits(cfg), tmp_path / str(weight))
        test = load_splits(cfg).test.query("sentence_index == 0")
        predicted = np.array(cfg.labels)[clf.predict_proba(model_inputs(test)).argmax(axis=1)]
        accuracy[weight] = float((predicted == test["label"].to_numpy()).mean())
    assert read_meta(tmp_path / "0")["context"]["voice"] is False
    assert accuracy[1.0] == 1.0 > accuracy[0], accuracy


def test_quote_spans_give_one_quotation_one_decision():
    frame = pd.DataFrame({"text": ["Later.", '"We came.', "We saw.", 'We won," she said.', "We saw.", "Then."],
                          "article_id": ["a", "a", "a", "a", None, "a"], "sentence_index": [4, 0, 1, 2, 0, 3]})
    span = with_context(frame, quote_spans=True)["span"].tolist()
    assert span == [0, 1, 1, 1, 4, 5]  # the loose row and the sentences after the closing mark stand alone
    assert with_context(frame, quote_spans=True)["quoted"].eq("").all()  # the input is unchanged
    assert with_context(frame, quotes=True)["span"].tolist() == list(range(6))
    proba = np.array([[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.1, 0.2], [0.5, 0.2, 0.1, 0.2], [0.4, 0.2, 0.2, 0.2],
                      [0.1, 0.1, 0.1, 0.7], [0.25, 0.25, 0.25, 0.25]])
    pooled = pool_quote_spans(proba, span)
    geometric = np.cbrt(proba[1] * proba[2] * proba[3])
    for row in (1, 2, 3):
        np.testing.assert_allclose(pooled[row], geometric / geometric.sum())
    assert pooled[1].argmax() == 1  # two of three sentences lean to `claim`; the one sure sentence decides
    np.testing.assert_array_equal(pooled[[0, 4, 5]], proba[[0, 4, 5]])
    assert pool_quote_spans(proba, range(6)) is proba


def test_baseline_decides_a_quotation_as_a_whole(tmp_path):
    """Neither the continuation's words nor a quote-state feature are given: only pooling with the sentence
    that opens the quotation labels the continuation as that quotation's."""
    path = tmp_path / "quotes.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in quote_rows()))
    accuracy = {}
    for spans in (True, False):
        cfg = config(path, "context.window=0", "context.title=false", "context.quotes=false",
                     f"context.quote_spans={str(spans).lower()}", "model.voice_weight=0")
        baseline.fit(cfg, load_splits(cfg), tmp_path / str(spans))
        test = load_splits(cfg).test
        quoted = test[test["article_id"].isin(test.loc[test["text"].str.contains('"'), "article_id"])]
        accuracy[spans] = continuation_accuracy(tmp_path / str(spans), quoted)
    assert read_meta(tmp_path / "True")["context"]["quote_spans"] is True
    assert accuracy[True] == 1.0 and accuracy[False] <= 0.75


@pytest.fixture(scope="module")
def logged_context_model(context_file, tmp_path_factory):
    cfg = tmp_path_factory.mktemp("ctxcfg") / "ctx.yaml"
    cfg.write_text(f"extends: {ROOT / 'configs/baseline.yaml'}\ndata: {{path: {context_file}}}\n"
                   "model: {kind: baseline, C: 100.0}\ncontext: {window: 1, title: true}\n"
                   "eval: {bootstrap: 0}\ntracking: {registered_model: null, experiment: tests-context}\n")
    from train.run import train

    return train(cfg)


def test_pyfunc_reads_rows_of_one_article_as_context(logged_context_model):
    model = mlflow.pyfunc.load_model(logged_context_model["model_uri"])
    assert model.metadata.metadata["context"] == {"window": 1, "neighbour_words": 0, "title": True, "quotes": False,
                                                  "quote_spans": True, "voice": True}
    cont = "We are looking at every option."
    quote = pd.DataFrame({"text": [INTRO["attributed_quote"][0], cont], "article_id": ["q", "q"],
                          "sentence_index": [0, 1], "title": ["Minister speaks"] * 2})
    response = pd.DataFrame({"text": [INTRO["official_response"][0], cont], "article_id": ["r", "r"],
                             "sentence_index": [0, 1], "title": ["Company memo leaked"] * 2})
    both = pd.concat([quote, response], ignore_index=True)
    out = model.predict(both)
    assert out["label"].tolist()[1] == "attributed_quote" and out["label"].tolist()[3] == "official_response"
    # Batched with another article == each article alone; shuffled rows == ordered rows.
    pd.testing.assert_frame_equal(out.iloc[:2].reset_index(drop=True), model.predict(quote))
    shuffled = model.predict(response.iloc[::-1].reset_index(drop=True))
    pd.testing.assert_frame_equal(shuffled.iloc[::-1].reset_index(drop=True), model.predict(response))
    # A row without article_id stands alone: the same as that text sent by itself.
    loose = model.predict(pd.DataFrame({"text": [cont, cont], "article_id": [None, "q"]}))
    alone = model.predict(pd.DataFrame({"text": [cont]}))
    np.testing.assert_allclose(loose.iloc[0, 1:].to_numpy(float), alone.iloc[0, 1:].to_numpy(float))


def test_evaluate_reads_article_fields(logged_context_model, context_file, tmp_path):
    rows = [r for r in context_rows() if r["split"] == "test"]
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows[::-1]))  # reversed: sentence_index must decide
    result = last_json(run_cli("evaluate", "--model", logged_context_model["model_uri"], "--data", path,
                               "--json", "--bootstrap", "0", check=True).stdout)
    assert result["n"] == len(rows) and result["accuracy"] == 1.0
    no_ids = tmp_path / "loose.jsonl"
    no_ids.write_text("".join(json.dumps({"text": r["text"], "label": r["label"]}) + "\n" for r in rows))
    loose = last_json(run_cli("evaluate", "--model", logged_context_model["model_uri"], "--data", no_ids,
                              "--json", "--bootstrap", "0", check=True).stdout)
    assert loose["accuracy"] < 1.0  # the same sentences without their articles lose the cue


def test_tiny_transformer_with_context_is_batch_invariant(context_file, tmp_path):
    from train import transformer

    bert = build_tiny_bert(tmp_path / "bert", TEXTS + [r["text"] for r in context_rows()] + ["minister speaks"])
    cfg = load_config(ROOT / "configs/transformer.yaml", [
        f"data.path={context_file}", f"model.name_or_path={bert}", "model.epochs=1", "model.batch_size=8",
        "model.export_onnx=false", "model.freeze_layers=0", "model.stack_window=0", "context.window=1",
        "context.title=true", "model.max_length=64"])
    clf = transformer.fit(cfg, load_splits(cfg), tmp_path / "model")
    frame = pd.DataFrame(context_rows()[:6])
    together = clf.predict_proba(frame)
    apart = np.vstack([clf.predict_proba(frame[frame["article_id"] == a]) for a in frame["article_id"].unique()])
    np.testing.assert_allclose(together, apart, atol=1e-5)
    texts, pairs = encoder_inputs(with_context(frame, 1, True), "[SEP]", True)
    assert texts[1] == frame.loc[1, "text"] and pairs[1] == f"{frame.loc[1, 'title']} [SEP] {frame.loc[0, 'text']} [SEP] {frame.loc[2, 'text']}"
    # Context changes what the model reads: the same sentence after another introduction scores differently.
    moved = frame.copy()
    moved.loc[0, "text"] = INTRO["official_response"][0]
    assert not np.allclose(clf.predict_proba(moved)[1], together[1])
    # Quotation pooling: each sentence of a quotation gets the geometric mean of their calibrated probabilities.
    quote = pd.DataFrame({"text": ['"We came.', "We saw.", 'We won," she said.', "Later."], "article_id": "q",
                          "sentence_index": range(4), "title": "Minister speaks"})
    clf.context = {**clf.context, "quote_spans": True}
    each = softmax(clf.logits(quote).astype(np.float64) / clf.temperature)
    geometric = np.exp(np.log(each[:3]).mean(axis=0))
    pooled = clf.predict_proba(quote)
    np.testing.assert_allclose(pooled[:3], np.tile(geometric / geometric.sum(), (3, 1)), rtol=1e-6)
    np.testing.assert_array_equal(pooled[3], each[3])


def test_tag_carries_the_quote_state_from_sentence_to_sentence(tmp_path):
    """`newstag tag` reads a continuation as a quote only where the sentence before it opened one."""
    data = tmp_path / "quotes.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in quote_rows()))
    cfg = tmp_path / "quotes.yaml"
    cfg.write_text(f"extends: {ROOT / 'configs/baseline.yaml'}\ndata: {{path: {data}}}\n"
                   "model: {kind: baseline, C: 100.0}\ncontext: {window: 0, title: false, quotes: true}\n"
                   "eval: {bootstrap: 0}\ntracking: {registered_model: null, experiment: tests-quotes}\n")
    from train.run import train

    uri = train(cfg)["model_uri"]
    cont = CONTINUATIONS[0]
    dump = tmp_path / "dump.jsonl"
    dump.write_text(json.dumps({"id": "q", "text": f'Ruiz told reporters: "We spoke to the families. {cont}'}) + "\n"
                    + json.dumps({"id": "p", "text": f"Ruiz spoke to the families. {cont}"}) + "\n")
    out = tmp_path / "tags.jsonl"
    run_cli("tag", dump, "-o", out, "--model", uri, "--format", "jsonl", check=True)
    rows = {(r["article_id"], r["text"]): r["label"] for r in map(json.loads, out.read_text().splitlines())}
    assert rows[("q", cont)] == "attributed_quote" and rows[("p", cont)] == "claim"


def _chunk_bert(path):
    return build_tiny_bert(path, TEXTS + [r["text"] for r in context_rows()] + ["minister speaks", "company memo leaked"])


def test_article_chunks_read_each_sentence_once_with_its_title_and_neighbours(tmp_path):
    """Chunks: the title, then consecutive sentences of one article in `sentence_index` order, each owned by exactly
    one chunk with all its tokens; at a chunk's edges, the tokens of the neighbours nearest its targets."""
    tokenizer, _ = encoder_tokenizer(_chunk_bert(tmp_path / "bert"), 32)
    frame = pd.DataFrame(context_rows(6)[::-1])  # reversed: sentence_index must decide
    frame.loc[0, "article_id"] = None  # a loose row: a chunk of its own
    framed = with_context(frame, window=1, title=True, chunk_tokens=26)
    chunks = article_chunks(framed, tokenizer, 26, 1, 32)
    cls, sep = tokenizer.encode("").ids

    def own(row):
        return tokenizer.encode(frame.loc[row, "text"], add_special_tokens=False).ids

    def article(row):
        rows = frame.index[frame["article_id"] == frame.loc[row, "article_id"]]
        return [row] if pd.isna(frame.loc[row, "article_id"]) else sorted(rows, key=lambda r: frame.loc[r, "sentence_index"])

    owned, split = {}, 0
    for ids, owners in chunks:
        targets = list(dict.fromkeys(o for o in owners if o >= 0))
        head = [cls, *tokenizer.encode(frame.loc[targets[0], "title"], add_special_tokens=False).ids, sep]
        assert len(ids) == len(owners) <= 26 and ids[:len(head)] == head and ids[-1] == sep
        rows = article(targets[0])
        first, last = rows.index(targets[0]), rows.index(targets[-1])
        assert rows[first:last + 1] == targets  # consecutive, in reading order
        for r in targets:
            assert r not in owned
            owned[r] = [t for t, o in zip(ids, owners) if o == r]
        begin, end = owners.index(targets[0]), len(owners) - owners[::-1].index(targets[-1])
        left, right = ids[len(head):begin], ids[end:-1]
        assert (left == own(rows[first - 1])[-len(left):] and left) if first else not left
        assert (right == own(rows[last + 1])[:len(right)] and right) if last + 1 < len(rows) else not right
        split += 0 < first or last + 1 < len(rows)
    assert sorted(owned) == list(range(len(frame))) and all(owned[r] == own(r) for r in owned)
    assert split and len(chunks) < len(frame)
    assert [o for o in chunks[[0 in c[1] for c in chunks].index(True)][1] if o >= 0] == [0] * len(own(0))


def test_chunked_transformer_scores_each_sentence_from_its_own_tokens(context_file, tmp_path):
    """A model that reads articles in chunks (context.chunk_tokens): what inference computes from every token's
    logits is what training computes from each sentence's mean hidden state; the scores do not depend on which
    articles share a call or on row order; context changes them; ONNX agrees; a loose row stands alone."""
    import torch

    from train import transformer

    cfg = load_config(ROOT / "configs/transformer.yaml", [
        f"data.path={context_file}", f"model.name_or_path={_chunk_bert(tmp_path / 'bert')}", "model.epochs=2",
        "model.batch_size=2", "model.learning_rate=1e-3", "model.freeze_layers=0", "model.stack_window=0",
        "model.max_length=32",
        "context.window=1", "context.title=true", "context.chunk_tokens=64", "eval.bootstrap=0"])
    clf = transformer.fit(cfg, load_splits(cfg), tmp_path / "model")
    frame = pd.DataFrame(context_rows()[:12])
    framed = with_context(frame, **clf.context)
    ids, owners = clf.encode(framed)
    assert len(ids) < len(frame)  # articles, not sentences, are the inputs
    logits = clf.logits(frame)
    for chunk, rows in zip(ids, owners):
        targets = list(dict.fromkeys(r for r in rows if r >= 0))
        spans = torch.tensor([[targets.index(r) if r >= 0 else -1 for r in rows]])
        with torch.no_grad():
            trained = clf.model(torch.tensor([chunk]), torch.ones(1, len(chunk), dtype=torch.long), spans)["logits"]
        np.testing.assert_allclose(trained[0].numpy(), logits[targets], atol=1e-5)
    together = clf.predict_proba(frame)
    apart = np.vstack([clf.predict_proba(frame[frame["article_id"] == a]) for a in frame["article_id"].unique()])
    np.testing.assert_allclose(together, apart, atol=1e-6)
    shuffled = clf.predict_proba(frame.iloc[::-1])
    np.testing.assert_allclose(shuffled[::-1], together, atol=1e-6)
    moved = frame.copy()
    moved.loc[0, "text"] = INTRO["official_response"][0]
    assert np.abs(clf.predict_proba(moved)[1] - together[1]).max() > 1e-3
    onnx = load(tmp_path / "model", runtime="onnx").predict_proba(frame)
    np.testing.assert_allclose(onnx, together, atol=1e-4)
    cont = CONTINUATIONS[0]
    loose = clf.predict_proba(pd.DataFrame({"text": [cont, INTRO["attributed_quote"][0], cont],
                                            "article_id": [None, "q", "q"], "sentence_index": [0, 0, 1]}))
    np.testing.assert_allclose(loose[0], clf.predict_proba(pd.DataFrame({"text": [cont]}))[0], atol=1e-6)
    assert np.abs(loose[0] - loose[2]).max() > 1e-3


def test_tag_and_evaluate_read_articles_in_chunks(context_file, tmp_path):
    """A chunked model through the console script: `newstag tag` gives each sentence of a dump what the logged model
    gives the same sentences as rows of their articles, and `newstag evaluate` scores a file the same way."""
    from infer.segment import model_text

    cfg = tmp_path / "chunks.yaml"
    cfg.write_text(f"extends: {ROOT / 'configs/transformer.yaml'}\ndata: {{path: {context_file}}}\n"
                   f"model: {{name_or_path: {_chunk_bert(tmp_path / 'bert')}, epochs: 2, batch_size: 2, "
                   "learning_rate: 1.0e-3, freeze_layers: 0, stack_window: 0, max_length: 32, export_onnx: false}\n"
                   "context: {chunk_tokens: 64}\neval: {bootstrap: 0}\n"
                   "tracking: {registered_model: null, experiment: tests-chunks}\n")
    uri = last_json(run_cli("train", "-c", cfg, check=True).stdout)["model_uri"]
    test = [r for r in context_rows() if r["split"] == "test"]
    articles = {}
    for r in test:
        articles.setdefault(r["article_id"], {"id": r["article_id"], "title": r["title"], "text": []})["text"].append(r["text"])
    dump, out = tmp_path / "dump.jsonl", tmp_path / "tags.jsonl"
    dump.write_text("".join(json.dumps({**a, "text": " ".join(a["text"])}) + "\n" for a in articles.values()))
    run_cli("tag", dump, "-o", out, "--model", uri, "--format", "jsonl", "--batch-size", "4", check=True)
    rows = pd.DataFrame(map(json.loads, out.read_text().splitlines()))
    assert rows["text"].tolist() == [r["text"] for r in test]
    model = mlflow.pyfunc.load_model(uri)
    expected = model.predict(pd.DataFrame({"text": rows["text"].map(model_text), "article_id": rows["article_id"],
                                           "sentence_index": rows["sentence_index"],
                                           "title": rows["article_id"].map(lambda a: articles[a]["title"])}))
    probs = [c for c in expected.columns if c.startswith("prob_")]
    np.testing.assert_allclose(rows[probs].to_numpy(float), expected[probs].to_numpy(float), atol=1e-6)
    data = tmp_path / "eval.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in test[::-1]))  # reversed: sentence_index must decide
    result = last_json(run_cli("evaluate", "--model", uri, "--data", data, "--json", "--bootstrap", "0",
                               check=True).stdout)
    assert result["n"] == len(test)
    assert result["accuracy"] == pytest.approx((expected["label"] == [r["label"] for r in test]).mean())
