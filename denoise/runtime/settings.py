"""Checks of configuration values, run before any work, so that a value that cannot work is
one line naming the key, the value and the rule, not a traceback from deep inside a run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from denoise.runtime.errors import SettingError, shorten


def setting(cfg: DictConfig, key: str) -> Any:
    """The value at a dotted ``key`` (None where absent), as plain Python."""
    value = OmegaConf.select(cfg, key, default=None)
    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value


def whole_number(cfg: DictConfig, key: str, minimum: int = 1, optional: bool = False) -> int | None:
    """An integer of at least ``minimum`` (``null`` allowed where ``optional``)."""
    value = setting(cfg, key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        rule = f"a whole number of at least {minimum}" + (" (or null)" if optional else "")
        raise SettingError(f"{key}={shown(value)}: must be {rule}")
    return value


def number_in(
    cfg: DictConfig,
    key: str,
    low: float,
    high: float,
    high_open: bool = False,
    optional: bool = False,
) -> float | None:
    """A number in ``[low, high]`` (or ``[low, high)``)."""
    value = setting(cfg, key)
    if value is None and optional:
        return None
    if not _in_range(value, low, high, high_open):
        interval = _interval(low, high, high_open)
        raise SettingError(f"{key}={shown(value)}: must be a number in {interval}")
    return float(value)


def positive_number(cfg: DictConfig, key: str) -> float:
    """A finite number above zero (learning rates, times)."""
    value = setting(cfg, key)
    if not _is_number(value) or not 0 < value < math.inf:
        raise SettingError(f"{key}={shown(value)}: must be a number above 0")
    return float(value)


def positive_numbers(
    cfg: DictConfig, key: str, what: str = "numbers", allow_empty: bool = False
) -> list[float]:
    """A list of finite numbers above zero (sizes); ``what`` names them in the error."""
    value = setting(cfg, key)
    valid = isinstance(value, list) and (bool(value) or allow_empty)
    if not valid or not all(_is_number(v) and 0 < v < math.inf for v in value):
        either = " (or [])" if allow_empty else ""
        raise SettingError(f"{key}={shown(value)}: must be a list of {what} above 0{either}")
    return [float(v) for v in value]


def fractions(cfg: DictConfig, key: str, allow_empty: bool = False) -> list[float]:
    """A list of numbers in [0, 1] (noise densities)."""
    value = setting(cfg, key)
    values = value if isinstance(value, list) else [value]
    if (not values and not allow_empty) or not all(_in_range(v, 0.0, 1.0) for v in values):
        raise SettingError(f"{key}={shown(value)}: must be a list of numbers in [0, 1]")
    return [float(v) for v in values]


def one_of(cfg: DictConfig, key: str, choices: Sequence[Any]) -> Any:
    """One of a few words or numbers (``true`` is not the number 1, though Python says so)."""
    value = setting(cfg, key)
    if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
        listed = ", ".join(str(choice) for choice in choices)
        raise SettingError(f"{key}={shown(value)}: must be one of {listed}")
    return value


def true_or_false(cfg: DictConfig, key: str) -> bool:
    """A switch: ``true`` or ``false``, not a word or number that reads as one."""
    value = setting(cfg, key)
    if not isinstance(value, bool):
        raise SettingError(f"{key}={shown(value)}: must be true or false")
    return value


def some_of(
    cfg: DictConfig, key: str, choices: Sequence[Any], what: str, allow_empty: bool = False
) -> list[Any]:
    """A list drawn from ``choices`` (by :func:`one_of`'s rule: ``true`` is no number);
    ``what`` names its items in the error."""
    value = setting(cfg, key)
    valid = isinstance(value, list) and (bool(value) or allow_empty)
    boolean = isinstance(choices[0], bool)
    if not valid or not all(v in choices and isinstance(v, bool) == boolean for v in value):
        listed = ", ".join(str(choice) for choice in choices)
        either = " (or [])" if allow_empty else ""
        raise SettingError(f"{key}={shown(value)}: must be a list of {what} among {listed}{either}")
    return value


def batch_limit(cfg: DictConfig, key: str, what: str) -> None:
    """A Lightning ``limit_*_batches``: null, a whole number of batches >= 1, or a fraction in
    (0, 1]. Zero is refused: the run would silently skip ``what``."""
    value = setting(cfg, key)
    if value is None:
        return
    if isinstance(value, bool) or not _is_number(value):
        raise SettingError(f"{key}={shown(value)}: must be a number of batches or a fraction")
    if value == 0:
        raise SettingError(f"{key}=0: the run would {what}; use at least 1 batch (or null for all)")
    if (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0 < value <= 1):
        return
    raise SettingError(
        f"{key}={shown(value)}: must be a whole number of batches >= 1 or a fraction in (0, 1]"
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


def _in_range(value: Any, low: float, high: float, high_open: bool = False) -> bool:
    if not _is_number(value):
        return False
    return low <= value < high if high_open else low <= value <= high


def _interval(low: float, high: float, high_open: bool) -> str:
    return f"[{low:g}, {high:g}{')' if high_open else ']'}"


def shown(value: Any) -> str:
    """The value as the user typed it on the command line, shortened if it is long."""
    return shorten(_typed(value))


def _typed(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ",".join(_typed(v) for v in value) + "]"
    return str(value)
