"""Which exceptions are the user's to fix: the CLI prints them as one line, exit 2, never a traceback.

Only what a user can act on counts: a bad config key or value, bad arguments, a file they named that is missing
or malformed, a model, run, version or alias they named that the tracking store does not have.  Anything else
(a store that fails, a model directory missing a file, a bug) keeps its traceback and exits 1.
"""

from __future__ import annotations

from mlflow.exceptions import MlflowException

from infer.job import JobError
from train.config import ConfigError
from train.data import DataError

USER_ERRORS = (ConfigError, DataError, JobError)


def _names_nothing(err: MlflowException) -> bool:
    """The store has no such run, logged model, registered model, version or alias."""
    if err.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    # MLflow reports an unknown alias of a known model as a bad parameter, not a missing resource.
    return err.error_code == "INVALID_PARAMETER_VALUE" and "alias" in err.message and "not found" in err.message


def is_user_error(err: BaseException) -> bool:
    return isinstance(err, USER_ERRORS) or (isinstance(err, MlflowException) and _names_nothing(err))


def describe(err: BaseException) -> str:
    return err.message if isinstance(err, MlflowException) else str(err)
