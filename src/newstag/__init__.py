"""newstag: sentence-level tagging of news articles (claim, attributed_quote, unverified, official_response)."""

__version__ = "0.1.0"
