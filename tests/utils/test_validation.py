import re

import numpy as np
import pytest

from keras_idim.utils import validation as v


def test_received_echoes_the_repr():
    assert v.received("dim", 0) == "Received: `dim=0`"
    assert v.received("name", "x") == "Received: `name='x'`"
    assert v.received("seed", None) == "Received: `seed=None`"


@pytest.mark.parametrize(
    "value, expected",
    [(0, True), (-3, True), (np.int64(2), True), (np.uint8(1), True)]
    + [(True, False), (np.bool_(True), False), (1.0, False), ("1", False)]
    + [(None, False)],
)
def test_is_int(value, expected):
    assert v.is_int(value) is expected


@pytest.mark.parametrize(
    "value, expected",
    [(0, True), (-2.5, True), (np.float32(0.5), True), (np.int16(3), True)]
    + [(True, False), (float("nan"), False), (float("inf"), False), ("1", False)],
)
def test_is_number(value, expected):
    assert v.is_number(value) is expected


def test_is_positive_number():
    assert v.is_positive_number(1e-9) and v.is_positive_number(np.int64(3))
    assert not v.is_positive_number(0) and not v.is_positive_number(-1.0)
    assert not v.is_positive_number(True)


@pytest.mark.parametrize("value", [1, 7, np.int64(7), np.uint32(5), 2**40])
def test_check_positive_int_returns_a_python_int(value):
    out = v.check_positive_int("dim", value)
    assert out == value and type(out) is int


@pytest.mark.parametrize("value", [0, -1, 2.0, "3", None, True, False, np.bool_(1)])
def test_check_positive_int_refuses(value):
    echo = re.escape(f"Received: `dim={value!r}`")
    with pytest.raises(
        ValueError, match=rf"^`dim` should be a positive integer\. {echo}$"
    ):
        v.check_positive_int("dim", value)


@pytest.mark.parametrize("seed", [0, 1, 2**32 - 1, np.int64(5), np.uint32(2**32 - 1)])
def test_check_seed_accepts_the_one_range(seed):
    out = v.check_seed(seed)
    assert out == seed and type(out) is int
    assert v.SEED_RANGE == (0, 2**32)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**63, 1.0, "0", None, True, np.int64(-1)])
def test_check_seed_refuses(seed):
    echo = re.escape(f"Received: `seed={seed!r}`")
    with pytest.raises(
        ValueError,
        match=rf"`seed` should be an integer in \[0, 2\*\*32\), as "
        rf"`keras.utils.set_random_seed` accepts\. {echo}",
    ):
        v.check_seed(seed)


def test_check_seed_names_its_argument():
    with pytest.raises(ValueError, match=r"`seeds` should be.*`seeds=-2`"):
        v.check_seed(-2, name="seeds")


def test_check_bool():
    assert v.check_bool("shuffle", True) is True
    assert v.check_bool("shuffle", False) is False
    for bad in (1, 0, "yes", None, np.bool_(True)):
        with pytest.raises(ValueError, match=r"`shuffle` should be a bool\. Received"):
            v.check_bool("shuffle", bad)


def test_check_name():
    assert v.check_name("name", "  mnist ") == "mnist"
    for bad in ("", "   ", None, 3, b"mnist"):
        with pytest.raises(
            ValueError, match=r"`name` should be a non-empty string\. Received"
        ):
            v.check_name("name", bad)


def test_check_positive_number():
    out = v.check_positive_number("lr", np.int64(3))
    assert out == 3.0 and type(out) is float
    assert v.check_positive_number("lr", None, allow_none=True) is None
    with pytest.raises(ValueError, match=r"^`lr` should be a positive number\. "):
        v.check_positive_number("lr", 0)
    with pytest.raises(ValueError, match=r"a positive number \(e\.g\. 0\.1\) or None"):
        v.check_positive_number("lr", -1.0, allow_none=True, hint=" (e.g. 0.1)")
    for bad in (True, float("inf"), float("nan"), "0.1", None):
        with pytest.raises(ValueError, match=r"`lr` should be a positive number"):
            v.check_positive_number("lr", bad)


def test_check_fraction():
    assert v.check_fraction("fraction", 1) == 1.0
    assert v.check_fraction("fraction", np.float32(0.5)) == 0.5
    for bad in (0, 1.01, -0.5, True, "0.9", None):
        with pytest.raises(
            ValueError, match=r"`fraction` should be a number in \(0, 1\]"
        ):
            v.check_fraction("fraction", bad)


def test_check_choice():
    assert v.check_choice("mode", "min", ("max", "min")) == "min"
    for bad in ("MAX", "", None, 1):
        echo = re.escape(f"Received: `mode={bad!r}`")
        with pytest.raises(
            ValueError, match=rf"`mode` should be one of 'max', 'min'\. {echo}"
        ):
            v.check_choice("mode", bad, ("max", "min"))


def test_check_int_tuple():
    out = v.check_int_tuple("shape", [np.int64(8), 8, 1], length=3)
    assert out == (8, 8, 1) and all(type(x) is int for x in out)
    assert v.check_int_tuple("hidden", ()) == ()
    with pytest.raises(ValueError, match=r"`shape` should be a tuple of 3 positive"):
        v.check_int_tuple("shape", (8, 8), length=3)
    with pytest.raises(ValueError, match=r"`hidden` should be a tuple of positive"):
        v.check_int_tuple("hidden", (True,))
    with pytest.raises(
        ValueError, match=r"should be a non-empty tuple.*`filters=\(\)`"
    ):
        v.check_int_tuple("filters", (), allow_empty=False)
    for bad in ((0,), (2.0,), 3, "33", None):
        with pytest.raises(ValueError, match=r"`hidden` should be a tuple"):
            v.check_int_tuple("hidden", bad)
