"""Exact decimals as scaled integers: units and rates carry 4 places, money is whole cents.

Scaled int64 keeps polars arithmetic exact and fast; a units x rate product is at most
(1e5 * 1e4) ** 2 = 1e18, inside int64.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

SCALE = 10_000  # 4 decimal places for units, hours and rates
PLACES = 4
MAX_INTEGER_DIGITS = 5  # claim units and rates below 100,000
# Digits, optionally a point and up to four places (zeros after them are harmless).
CLAIM_NUMBER_PATTERN = r"^([0-9]{1,5})(?:\.([0-9]{0,4})0*)?$"  # ASCII digits only


def to_scaled(value: Decimal | str | int) -> int:
    """Exact Decimal -> int scaled by 10^4; ValueError when it needs more than 4 places."""
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation as error:
        raise ValueError(f"{value!r} is not a decimal number") from error
    if not number.is_finite():
        raise ValueError(f"{value!r} is not a finite number")
    scaled = number * SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value!r} has more than {PLACES} decimal places")
    return int(scaled)


def amount_cents(units_scaled: int, rate_scaled: int) -> int:
    """units x rate rounded half-up to cents (both non-negative, scaled by 10^4)."""
    return (units_scaled * rate_scaled + 500_000) // 1_000_000


def format_scaled(value: int | None) -> str:
    """4-place scaled int -> shortest exact decimal text ('4', '2.5', '0.25')."""
    if value is None:
        return ""
    number = Decimal(value) / SCALE
    text = format(number.quantize(Decimal(1)) if number == number.to_integral_value() else number.normalize(), "f")
    return text


def format_cents(value: int | None) -> str:
    if value is None:
        return ""
    return format((Decimal(value) / 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP), "f")
