"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad input: an unknown option, a wrong type, an out-of-range value, missing data."""


class ConfigError(UserError):
    """The composed configuration is invalid."""


class DamagedFile(UserError):
    """A file regbench wrote is cut off, overwritten, or holds what it never writes."""

    def __init__(self, path, reason: str, choices: str = ""):
        self.path, self.reason = path, reason
        super().__init__(f"{path} {reason}" + (f"; {choices}" if choices else ""))


#: What a damaged ``result.json`` leaves a user to choose from.
RESULT_CHOICES = "re-run with resume=false (that run is trained again and the file replaced), or move the file away"

#: What a damaged ``last.pt`` leaves a user to choose from (nothing is deleted unasked).
CHECKPOINT_CHOICES = ("resume from best.pt with resume=best (not exact), start again with resume=false "
                      "(the damaged file is then replaced), or move the file away")


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
