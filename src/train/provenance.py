"""Where real-news articles come from: URL keys, the evaluation exclusion list, outlets and their splits.

Kept free of heavy imports so that `python -m train.provenance [--split] URL ...` answers at once while annotating.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import zlib
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_EXCLUSIONS = Path(__file__).resolve().parents[3] / "shared" / "eval-exclusions.txt"
CORPUS_SEED = 13  # the shipped corpus's build seed: `newstag data build` and `--split` must agree on it
_HOST_PREFIXES = ("www.", "m.", "amp.")


def url_key(url: str) -> str:
    """The normalised form that `eval-exclusions.txt` hashes: lower-case host + path, no scheme/query/port."""
    parts = urlsplit(url.strip().lower() if "://" in url else "//" + url.strip().lower())
    host = (parts.hostname or "").rstrip(".")
    for prefix in _HOST_PREFIXES:
        if host.startswith(prefix):
            host = host[len(prefix):]
            break
    path = parts.path.rstrip("/")
    if path.endswith("/amp"):
        path = path[: -len("/amp")]
    return host + path


def url_hash(url: str) -> str:
    return hashlib.sha256(url_key(url).encode("utf-8")).hexdigest()


def outlet_of(url: str) -> str:
    """The outlet is the host without www./m./amp. — a distinct host counts as a distinct outlet."""
    return url_key(url).split("/", 1)[0]


def load_exclusions(path: Path | str | None = None) -> set[str]:
    """Hashes from the exclusion file; an absent file excludes nothing (a clone without `../shared`)."""
    path = Path(path) if path else DEFAULT_EXCLUSIONS
    if not path.exists():
        return set()
    lines = path.read_text(encoding="utf-8").splitlines()
    return {ln.strip().lower() for ln in lines if re.fullmatch(r"\s*[0-9a-fA-F]{64}\s*", ln)}


# Second-level labels under which a country's registrable domains sit (bbc.co.uk, abc.net.au, punchng.com).
_SECOND_LEVEL = {"co", "com", "org", "net", "gov", "ac", "edu", "go", "or", "ne", "gob", "nic"}


def outlet_group(outlet: str) -> str:
    """The newsroom behind a host: `edition.cnn.com` and `cnn.com` are one outlet for splitting."""
    labels = outlet.lower().split(".")
    keep = 3 if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SECOND_LEVEL else 2
    return ".".join(labels[-keep:])


def outlet_split(group: str, seed: int, dev_share: float = 0.18, test_share: float = 0.22) -> str:
    """A fixed split per outlet from a hash of its name: adding articles or outlets never moves an old one."""
    u = zlib.crc32(f"{seed}:{group}".encode()) / 2**32
    return "test" if u < test_share else "dev" if u < test_share + dev_share else "train"


def corpus_outlet_splits(corpus: Path | str) -> dict[str, str]:
    """Outlet group -> split in a built corpus, where outlets joined by related stories may differ from the hash."""
    splits = {}
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("origin") == "real":
                splits[outlet_group(row["outlet"])] = row["split"]
    return splits


def main(argv: list[str] | None = None) -> int:
    """Print `ok` or `EXCLUDED` for each URL: annotators check a page before they use it.

    With `--split`, also the split the page's outlet lands in (the built corpus's, else the hash's), so that a
    wave of training articles can keep dev and test a fixed yardstick by using only `train` outlets.
    """
    parser = argparse.ArgumentParser(prog="python -m train.provenance")
    parser.add_argument("urls", nargs="+", metavar="URL")
    parser.add_argument("--split", action="store_true", help="print the split of the page's outlet")
    parser.add_argument("--corpus", default="data/corpus/sentences.jsonl", help="built corpus for --split")
    parser.add_argument("--seed", type=int, default=CORPUS_SEED, help="the corpus build's seed (`newstag data build`)")
    args = parser.parse_args(argv)
    excluded = load_exclusions()
    known = corpus_outlet_splits(args.corpus) if args.split else {}
    bad = 0
    for url in args.urls:
        hit = url_hash(url) in excluded
        bad += hit
        fields = ["EXCLUDED" if hit else "ok", outlet_of(url), url]
        if args.split:
            group = outlet_group(outlet_of(url))
            fields.insert(1, known.get(group) or outlet_split(group, args.seed))
        print("\t".join(fields))
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
