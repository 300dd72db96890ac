"""Formatting helpers for temperatures."""

from convert import celsius_to_fahrenheit


def format_temperature(celsius, unit="C"):
    """Render a Celsius reading in the requested unit, rounded to one decimal."""
    if unit == "C":
        return f"{celsius:.1f} °C"
    if unit == "F":
        return f"{celsius_to_fahrenheit(celsius):.1f} °F"
    raise ValueError(f"unknown unit: {unit!r}")
