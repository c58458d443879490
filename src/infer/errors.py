"""The two ways a tagging job stops: the user's to fix (exit 2) or not (exit 1, committed chunks kept)."""


class JobError(Exception):
    """A user error that stops the job before it starts (bad output path, resume mismatch, unusable model)."""


class JobFailed(Exception):
    """The job stopped for a reason that is not the user's (a Spark executor died): exit 1, parts kept for --resume."""
