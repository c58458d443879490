"""The data card renders training results it is given; it trains nothing itself."""

import json

from train.card import card, keyword_rule


def test_card_renders_counts_keyword_rule_and_learning_curve(tmp_path):
    texts = {"claim": "The river rose overnight.", "attributed_quote": "Police said two men were held.",
             "unverified": "The figures could not be verified.", "official_response": "The ministry declined to comment."}
    rows = [{"text": f"{text} ({i})", "label": label, "article_id": f"a{i}", "split": split, "origin": "synthetic"}
            for i, split in enumerate(["train", "dev", "test"]) for label, text in texts.items()]
    rows += [{"text": f"Real sentence {i}.", "label": "claim", "article_id": f"r{i}", "split": "train", "origin": "real",
              "outlet": f"outlet{i}.com", "region": "UK", "topic": "crime"} for i in range(4)]
    corpus = tmp_path / "s.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = {0.5: {"dev/macro_f1": 0.5, "run_id": "half"},
            1.0: {"dev/macro_f1": 0.75, "run_id": "full", "test/macro_f1": 0.8, "test/accuracy": 0.9,
                  **{f"test/f1_{label}": 0.7 for label in texts}}}
    text = card(str(corpus), "configs/baseline.yaml", runs)
    assert all(keyword_rule(t) == label for label, t in texts.items())  # so the rule is perfect on this test split
    keyword = next(line for line in text.splitlines() if line.startswith("| keyword rule"))
    assert keyword.startswith("| keyword rule | 1.000 | 1.000 |")  # accuracy, macro-F1
    assert "| baseline (TF-IDF + LR) | 0.900 | 0.800 |" in text
    curve = [line for line in text.splitlines() if line.endswith(("| half |", "| full |"))]
    assert curve == ["| 2 | baseline.yaml | 0.500 | half |", "| 4 | baseline.yaml | 0.750 | full |"]  # of 4 real
