"""Durations as people write them: "30s", "5m", "1h30m", "1.5s", or plain seconds."""

import re

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|h|m|s))+")


def parse_duration(value: str | int | float) -> float:
    """Seconds in `value`; raises ValueError with a message fit for the user.

    Booleans are refused although Python counts them as numbers.
    """
    if isinstance(value, bool):
        raise ValueError('expected a duration such as "30s", "5m", "1h30m" or seconds')
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        seconds = _parse_text(value.strip().lower())
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError("must be a positive duration")
    return seconds


def _parse_text(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    if not _WHOLE.fullmatch(text):
        raise ValueError(
            f'{text!r} is not a duration; use e.g. "30s", "5m", "1h30m" or seconds'
        )
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Seconds as people write them in an error message: "2s", "1.5s", "5m", "1h30m"."""
    whole_minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(whole_minutes), 60)

    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else ""]
    if rest or not (hours or minutes):
        parts.append(f"{rest:.3f}".rstrip("0").rstrip(".") + "s")
    return "".join(parts)
