"""Time values ("8ep", "500ba", "2048sp", "0.25dur", plain numbers) and their conversion to steps."""

from __future__ import annotations

import math

import pytest

from trainbench.timeunits import ZERO, Clock, Time

# --- Time.parse ---


@pytest.mark.parametrize(
    ("raw", "value", "unit"),
    [
        ("8ep", 8.0, "ep"),
        ("500ba", 500.0, "ba"),
        ("2048sp", 2048.0, "sp"),
        ("0.25dur", 0.25, "dur"),
        ("1.5ep", 1.5, "ep"),
        (".5ep", 0.5, "ep"),
        ("0ep", 0.0, "ep"),
        ("1dur", 1.0, "dur"),
    ],
)
def test_parse_units(raw: str, value: float, unit: str) -> None:
    t = Time.parse(raw)
    assert (t.value, t.unit) == (value, unit)
    assert isinstance(t.value, float)


@pytest.mark.parametrize(("raw", "value"), [(8, 8.0), (0, 0.0), (2.5, 2.5), (0.25, 0.25)])
def test_plain_numbers_are_epochs(raw: float, value: float) -> None:
    assert Time.parse(raw) == Time(value, "ep")


@pytest.mark.parametrize("raw", [" 8ep", "8ep ", "  8ep\n", "8 ep", "\t8\tep\t"])
def test_whitespace_is_ignored(raw: str) -> None:
    assert Time.parse(raw) == Time(8.0, "ep")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1e3ba", Time(1000.0, "ba")),
        ("1E3ba", Time(1000.0, "ba")),
        ("2.5e-1dur", Time(0.25, "dur")),
        ("1e+2sp", Time(100.0, "sp")),
        ("1e-05ep", Time(1e-5, "ep")),
    ],
)
def test_exponent_forms(raw: str, expected: Time) -> None:
    assert Time.parse(raw) == expected


def test_parse_passes_a_time_through() -> None:
    t = Time(3.0, "ba")
    assert Time.parse(t) is t


@pytest.mark.parametrize(
    "raw",
    ["3xx", "ep", "", "8 epochs", "8ep8", "ep8", "-1ep", "8ba ep", "1..5ep", "nan", "inf",
     None, [8], {"ep": 8}],
)
def test_malformed_values_are_refused(raw: object) -> None:
    with pytest.raises(ValueError, match="expected a time like '8ep'"):
        Time.parse(raw)


@pytest.mark.parametrize("raw", [True, False])
def test_bools_are_not_numbers(raw: bool) -> None:
    with pytest.raises(ValueError, match="expected a time like"):
        Time.parse(raw)


@pytest.mark.parametrize("raw", [-1, -0.5, math.inf, -math.inf, math.nan])
def test_negative_and_non_finite_numbers_are_refused(raw: float) -> None:
    with pytest.raises(ValueError, match="finite number >= 0"):
        Time.parse(raw)


def test_error_message_shows_the_bad_value() -> None:
    with pytest.raises(ValueError, match="'3xx'"):
        Time.parse("3xx")


# --- str(Time) ---


@pytest.mark.parametrize(
    ("t", "text"),
    [
        (Time(8.0, "ep"), "8ep"),
        (Time(500.0, "ba"), "500ba"),
        (Time(2048.0, "sp"), "2048sp"),
        (Time(0.25, "dur"), "0.25dur"),
        (Time(1.5, "ep"), "1.5ep"),
        (Time(0.0, "ep"), "0ep"),
    ],
)
def test_str(t: Time, text: str) -> None:
    assert str(t) == text


@pytest.mark.parametrize(
    "raw", ["8ep", "500ba", "2048sp", "0.25dur", "1.5ep", "0ep", "1e-05ep", "2.5e-1dur", "1e3ba", 3, 0.1,
            "123456789sp", "0.001dur"],
)
def test_str_round_trips(raw: object) -> None:
    t = Time.parse(raw)
    assert Time.parse(str(t)) == t
    assert str(Time.parse(str(t))) == str(t)


def test_zero() -> None:
    assert Time(0.0, "ep") == ZERO
    assert str(ZERO) == "0ep"


# --- Clock ---


@pytest.fixture
def clock() -> Clock:
    return Clock(steps_per_epoch=10, batch_size=32, total_steps=100)


@pytest.mark.parametrize(
    ("t", "steps"),
    [
        ("2ep", 20),
        ("0.5ep", 5),
        ("15ba", 15),
        ("320sp", 10),
        ("336sp", 10),  # 10.5 batches: rounded
        ("0.25dur", 25),
        ("1dur", 100),
        ("0dur", 0),
        (3, 30),  # a plain number is epochs
        (Time(4.0, "ba"), 4),
    ],
)
def test_clock_steps_per_unit(clock: Clock, t: object, steps: int) -> None:
    assert clock.steps(t) == steps
    assert isinstance(clock.steps(t), int)


def test_dur_needs_total_steps() -> None:
    c = Clock(steps_per_epoch=10, batch_size=32)  # total_steps not known yet
    with pytest.raises(ValueError, match="'dur'"):
        c.steps("0.5dur")
    assert c.steps("2ep") == 20  # other units still work


def test_fractional_steps_per_epoch() -> None:
    c = Clock(steps_per_epoch=2.5, batch_size=8, total_steps=10)
    assert c.steps("4ep") == 10
    assert c.steps("0.4ep") == 1


def test_at_least_one(clock: Clock) -> None:
    assert clock.steps("0.01ep") == 0
    assert clock.steps("0.01ep", at_least_one=True) == 1
    assert clock.steps("1sp") == 0
    assert clock.steps("1sp", at_least_one=True) == 1
    assert clock.steps("0.001dur", at_least_one=True) == 1
    # a zero time stays zero: at_least_one only keeps short non-zero times from vanishing
    assert clock.steps("0ep", at_least_one=True) == 0
    assert clock.steps("0ba", at_least_one=True) == 0
    # and it never changes a time that is already at least a step
    assert clock.steps("3ep", at_least_one=True) == 30


def test_batch_scale_shrinks_batches_and_samples_only() -> None:
    c = Clock(steps_per_epoch=2, batch_size=32, total_steps=40, batch_scale=0.1)
    assert c.steps("100ba") == 10
    assert c.steps("3200sp") == 10
    assert c.steps("5ep") == 10  # epochs are dilated through steps_per_epoch, not batch_scale
    assert c.steps("0.5dur") == 20  # fractions of the (already shrunk) total
    assert c.steps("1ba", at_least_one=True) == 1


def test_epoch(clock: Clock) -> None:
    assert clock.epoch(0) == 0.0
    assert clock.epoch(25) == 2.5
    assert clock.epoch(100) == 10.0
    assert Clock(steps_per_epoch=2.5, batch_size=8).epoch(5) == 2.0


def test_epoch_inverts_steps(clock: Clock) -> None:
    for ep in (1, 2.5, 7):
        assert clock.epoch(clock.steps(Time(ep, "ep"))) == pytest.approx(ep)
