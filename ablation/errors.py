"""One exception family. The CLI prints ``str(err)`` as one line and exits 2.

Messages follow one shape: what is wrong, where (file, field, value), and how
to fix it.
"""


class AblationError(Exception):
    """Base of every error caused by the user's input or environment."""


class ConfigError(AblationError):
    """An experiment or study file, or a --set override, is invalid."""


class DataError(AblationError):
    """A data source is missing, malformed or unusable for the request."""


class StudyError(AblationError):
    """A study cannot be run or resumed as asked."""


class TrackingError(AblationError):
    """The MLflow tracking store or the Optuna storage cannot be used."""


class DivergedError(AblationError):
    """Training produced a non-finite loss."""

    def __init__(self, epoch: int, step: int, loss: float):
        self.epoch, self.step, self.loss = epoch, step, loss
        super().__init__(
            f"diverged: loss is {loss} at epoch {epoch}, step {step}; "
            "lower optim.lr, set optim.grad_clip, or check the inputs"
        )


def closest(name: str, choices) -> str:
    """' (did you mean X?)' for the closest known name, or '' if none is close."""
    import difflib

    match = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" (did you mean '{match[0]}'?)" if match else ""
