"""The baseline runs behind the data card: trained on all real train articles, or on a share of them.

Each is an ordinary logged run (experiment ``newstag-datacard``, not registered), so every number on the card
links to the run that produced it.  The card itself (``train.card``) only renders these results.
"""

from __future__ import annotations

from train.run import train

FRACTIONS = (0.25, 0.5, 0.75, 1.0)
QUIET = ("tracking.registered_model=null", "tracking.experiment=newstag-datacard", "eval.bootstrap=0")


def train_fractions(config: str, corpus_path: str, fractions: tuple[float, ...] = (1.0,)) -> dict[float, dict]:
    """One run per share of the real train articles (``data.train_fraction``), keyed by that share."""
    return {fraction: train(config, [*QUIET, f"data.path={corpus_path}", f"data.train_fraction={fraction}"])
            for fraction in fractions}
