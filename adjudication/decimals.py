"""Exact decimals as scaled integers: units and rates carry 4 places, money is whole cents.

Scaled int64 keeps polars arithmetic exact and fast. Every number read (a claim's units and billed
rate, a SPA's units and rate, a plan's monthly hours) is below 100,000, so a units x rate product is
below (1e5 * 1e4) ** 2 = 1e18, inside int64.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

SCALE = 10_000  # 4 decimal places for units, hours and rates
PLACES = 4
# Digits, optionally a point and up to four places (zeros after them are harmless).
CLAIM_NUMBER_PATTERN = r"^([0-9]{1,5})(?:\.([0-9]{0,4})0*)?$"  # ASCII digits only
LIMIT = 100_000  # every number read is below it (5 whole digits, as CLAIM_NUMBER_PATTERN)


def to_scaled(value: Decimal | str | int) -> int:
    """Exact Decimal -> int scaled by 10^4; ValueError when it is not a number, needs more than 4
    places or is not below LIMIT. The messages do not repeat the value (it may be client data)."""
    text = str(value).strip()
    try:
        if not text.isascii():  # Decimal reads other scripts' digits too
            raise InvalidOperation
        number = Decimal(text)
    except InvalidOperation as error:
        raise ValueError("is not a decimal number") from error
    if not number.is_finite():
        raise ValueError("is not a finite number")
    if number >= LIMIT:  # a negative one is refused by its reader, as negative
        raise ValueError(f"must be below {LIMIT:,}")
    scaled = number * SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"has more than {PLACES} decimal places")
    return int(scaled)
