"""Argument validation: one way to check a value and to say what was wrong.

Every error names the argument and echoes the value, in the Keras style:
"`dim` should be a positive integer. Received: `dim=0`". NumPy integers
are accepted wherever a Python integer is, and bools are refused wherever a
number is expected (`True` is an `int` to Python, never to a user).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

#: Seeds are what `keras.utils.set_random_seed` accepts: it seeds Python,
#: NumPy (which needs [0, 2**32)) and the backend from one integer.
SEED_RANGE = (0, 2**32)


def received(name: str, value: Any) -> str:
    """The end of every error message: "Received: `name=value`"."""
    return f"Received: `{name}={value!r}`"


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number (Python or NumPy), not a bool."""
    return (
        not isinstance(value, bool)
        and isinstance(value, numbers.Real)
        and math.isfinite(value)
    )


def is_positive_number(value: Any) -> bool:
    """A finite real number > 0, not a bool."""
    return is_number(value) and value > 0


def check_positive_int(name: str, value: Any) -> int:
    """Returns `value` as an int, or raises naming the argument.

    Args:
        name: str. The argument's name, quoted in the error.
        value: Any. What the user passed.

    Returns:
        The value as a Python `int`.

    Raises:
        ValueError: if `value` is not a positive integer (bools are refused).

    Example:

    >>> check_positive_int("dim", 3)
    3
    """
    if not is_int(value) or value <= 0:
        raise ValueError(
            f"`{name}` should be a positive integer. {received(name, value)}"
        )
    return int(value)


def check_seed(seed: Any, name: str = "seed") -> int:
    """Returns `seed` as an int in `SEED_RANGE`, or raises naming the argument."""
    low, high = SEED_RANGE
    if not is_int(seed) or not low <= seed < high:
        raise ValueError(
            f"`{name}` should be an integer in [0, 2**32), as "
            f"`keras.utils.set_random_seed` accepts. {received(name, seed)}"
        )
    return int(seed)


def check_bool(name: str, value: Any) -> bool:
    """Returns `value` if it is a bool, or raises naming the argument."""
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` should be a bool. {received(name, value)}")
    return value


def check_name(name: str, value: Any) -> str:
    """Returns `value` stripped if it is a non-empty string, or raises."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(
            f"`{name}` should be a non-empty string. {received(name, value)}"
        )
    return value.strip()


def check_positive_number(
    name: str, value: Any, *, allow_none: bool = False, hint: str = ""
) -> float | None:
    """Returns `value` as a float if it is a finite number > 0, or raises.

    Args:
        name: str. The argument's name.
        value: Any. What the user passed.
        allow_none: bool. Whether `None` is accepted (and returned).
            Defaults to `False`.
        hint: str. Said after "a positive number", e.g. " (e.g. 0.1)".
            Defaults to `""`.
    """
    if value is None and allow_none:
        return None
    if not is_positive_number(value):
        what = "a positive number" + hint + (" or None" if allow_none else "")
        raise ValueError(f"`{name}` should be {what}. {received(name, value)}")
    return float(value)


def check_fraction(name: str, value: Any, hint: str = "") -> float:
    """Returns `value` as a float in (0, 1], or raises naming the argument."""
    if not is_positive_number(value) or value > 1:
        raise ValueError(
            f"`{name}` should be a number in (0, 1]{hint}. {received(name, value)}"
        )
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Returns `value` if it is one of `choices`, or raises listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"`{name}` should be one of {', '.join(map(repr, choices))}. "
            f"{received(name, value)}"
        )
    return value


def check_int_tuple(
    name: str, value: Any, *, length: int | None = None, allow_empty: bool = True
) -> tuple[int, ...]:
    """Returns `value` as a tuple of positive ints, or raises naming it."""
    ok = (
        isinstance(value, (tuple, list))
        and all(is_int(v) and v > 0 for v in value)
        and (length is None or len(value) == length)
        and (allow_empty or len(value) > 0)
    )
    if not ok:
        if length is not None:
            what = f"a tuple of {length} positive integers"
        elif allow_empty:
            what = "a tuple of positive integers"
        else:
            what = "a non-empty tuple of positive integers"
        raise ValueError(f"`{name}` should be {what}. {received(name, value)}")
    return tuple(int(v) for v in value)
