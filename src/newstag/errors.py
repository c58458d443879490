"""Which exceptions are the user's to fix: the CLI prints them as one line, exit 2, never a traceback."""

from __future__ import annotations

from mlflow.exceptions import MlflowException

from infer.job import JobError
from train.config import ConfigError
from train.data import DataError

USER_ERRORS = (ConfigError, DataError, JobError, MlflowException, FileNotFoundError, PermissionError)


def describe(err: BaseException) -> str:
    if isinstance(err, MlflowException):
        return err.message
    if isinstance(err, OSError) and err.filename:
        return f"{err.filename}: {err.strerror}"
    return str(err)
