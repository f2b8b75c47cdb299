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
    """The short form of `seconds`: 2 -> "2s", 90 -> "1m30s", 1.5 -> "1.5s"."""
    if seconds < 60 or seconds != int(seconds):
        return f"{seconds:g}s"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n)
