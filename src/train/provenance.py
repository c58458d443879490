"""Where real-news articles come from: URL keys, the evaluation exclusion list, outlets and story duplicates.

Kept free of heavy imports so that `python -m train.provenance URL ...` answers at once while annotating.
"""
from __future__ import annotations

import hashlib
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

DEFAULT_EXCLUSIONS = Path(__file__).resolve().parents[3] / "shared" / "eval-exclusions.txt"
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


def main(argv: list[str]) -> int:
    """Print `ok` or `EXCLUDED` for each URL: annotators check a page before they use it."""
    excluded = load_exclusions()
    bad = 0
    for url in argv:
        hit = url_hash(url) in excluded
        bad += hit
        print(f"{'EXCLUDED' if hit else 'ok'}\t{outlet_of(url)}\t{url}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
