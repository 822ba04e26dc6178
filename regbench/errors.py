"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""

import re
from contextlib import contextmanager


class UserError(Exception):
    """Bad input: an unknown option, a wrong type, an out-of-range value, missing data.

    Its text is one line: a line break in the message (another library's error that it quotes, such as pickle's
    two-line "persistent id" complaint about a damaged file) becomes a space."""

    def __str__(self) -> str:
        return re.sub(r"\s*\n\s*", " ", super().__str__())


class ConfigError(UserError):
    """The composed configuration is invalid."""


class DamagedFile(UserError):
    """A file regbench wrote is cut off, overwritten, or holds what it never writes."""

    def __init__(self, path, reason: str, choices: str = ""):
        self.path, self.reason = path, reason
        super().__init__(f"{path} {reason}" + (f"; {choices}" if choices else ""))


#: What a damaged ``result.json`` leaves a user to choose from. Only that run is touched: a sweep-wide override
#: (resume=false) would retrain every run of the sweep, so the advice names the file instead.
RESULT_CHOICES = ("move that file away and re-run the same command: only that run is finished again "
                  "(from its checkpoint, or trained anew without one); every other result is kept")

#: What a damaged ``last.pt`` leaves a user to choose from (nothing is deleted unasked). ``resume=best`` is safe
#: to apply to a whole sweep: finished runs are kept, and runs whose last.pt can be read resume from it exactly.
CHECKPOINT_CHOICES = ("re-run with resume=best to continue that run from its best.pt (not exact; finished runs are "
                      "kept and other runs resume from their own last.pt), or move the file away to train that run anew")

#: What a damaged ``best.pt`` leaves: without it the run selects its last epoch.
BEST_CHOICES = "move it away and re-run: that run then ends on its last epoch instead of its best"


class DataNotFound(UserError):
    """A dataset's files are not on disk and cannot be downloaded."""


def check_range(key: str, value, low=None, high=None, *, low_inclusive: bool = True, high_inclusive: bool = True,
                allow_inf: bool = False) -> None:
    """Raise a ConfigError naming ``key`` unless low ≤ value ≤ high (bounds optional, each inclusive or not).

    Constructors call this with their own argument names; the builder that instantiates them
    prefixes the config path, so the user reads ``regularizer.dropout.p=1.5 is out of range [0, 1)``.
    NaN is always refused, and so is ±inf unless ``allow_inf`` (where inf means "no limit": max_norm=inf).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r} must be a number")
    if value != value or (value in (float("inf"), float("-inf")) and not allow_inf):
        raise ConfigError(f"{key}={value} must be a finite number")
    too_low = low is not None and (value < low or (value == low and not low_inclusive))
    too_high = high is not None and (value > high or (value == high and not high_inclusive))
    if too_low or too_high:
        lo = "(-inf" if low is None else ("[" if low_inclusive else "(") + f"{low}"
        hi = "inf)" if high is None else f"{high}" + ("]" if high_inclusive else ")")
        raise ConfigError(f"{key}={value} is out of range {lo}, {hi}")


def check_int(key: str, value, low=None, high=None) -> int:
    """Like :func:`check_range`, but the value must also be a whole number (a size, a count, a seed); returns it.

    ``trainer.max_epochs=1.5`` fails as ``must be a whole number ≥ 1``, ``trainer.max_epochs=0`` as
    ``is out of range [1, inf)``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        if low is not None and high is not None:
            bounds = f" in [{low}, {high}]"
        else:
            bounds = f" ≥ {low}" if low is not None else f" ≤ {high}" if high is not None else ""
        raise ConfigError(f"{key}={value!r} must be a whole number{bounds}")
    check_range(key, value, low, high)
    return value


def check_choice(key: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"{key}={value!r} is not one of: {', '.join(map(str, choices))}")


@contextmanager
def config_key(prefix: str):
    """Prefix a ConfigError raised inside with the config path it concerns. What a constructor raised under Hydra's
    ``instantiate`` (wrapped in its InstantiationException), and a bare TypeError or ValueError (a constructor
    refusing an argument), become one too."""
    try:
        yield
    except ConfigError as e:
        raise ConfigError(f"{prefix}.{e}") from None
    except Exception as e:
        from hydra.errors import InstantiationException

        if isinstance(e, InstantiationException):  # Hydra wraps what a constructor raised
            cause = e.__cause__
            if isinstance(cause, ConfigError):
                raise ConfigError(f"{prefix}.{cause}") from None
            raise ConfigError(f"{prefix}: {one_line(cause or e)}") from None
        if isinstance(e, (TypeError, ValueError)):  # a constructor refused an argument
            raise ConfigError(f"{prefix}: {one_line(e)}") from None
        raise


def one_line(message) -> str:
    """Collapse a multi-line library message into one line for the terminal."""
    return re.sub(r"\s+", " ", str(message)).strip()
