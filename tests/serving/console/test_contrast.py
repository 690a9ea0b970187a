"""The console's text colours against their backgrounds meet WCAG 2's AA contrast (4.5:1 for
body text), read from the stylesheet the pages load, so a colour change that breaks it fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import recengine.serving.console

CSS = Path(recengine.serving.console.__file__).parent / "static" / "console.css"

#: (text, background) pairs the pages use: custom properties by name, literals as written.
PAIRS = [("--ink", "--bg"), ("--ink", "--panel"), ("--muted", "--bg"), ("--muted", "--panel"),
         ("--accent", "--bg"), ("--accent-ink", "--accent"), ("--error", "--bg"),
         ("--ok", "--bg"), ("#fff", "#0d2a4a"), ("#0d2a4a", "#9cc7ff")]


def _luminance(colour: str) -> float:
    """WCAG 2's relative luminance of ``#rgb`` or ``#rrggbb``."""
    digits = colour.lstrip("#")
    if len(digits) == 3:
        digits = "".join(2 * d for d in digits)
    channels = [int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """WCAG 2's contrast ratio of two colours.

    >>> round(contrast("#000", "#fff"), 1)
    21.0
    """
    light, dark = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


@pytest.mark.parametrize(("text", "background"), PAIRS)
def test_text_is_readable_on_its_background(text: str, background: str) -> None:
    css = CSS.read_text()
    properties = dict(re.findall(r"(--[\w-]+):\s*(#[0-9a-fA-F]{3,6})", css))
    for colour in (text, background):
        assert colour in properties or colour in css, f"{colour} is not in console.css"
    ratio = contrast(properties.get(text, text), properties.get(background, background))
    assert ratio >= 4.5, f"{text} on {background}: {ratio:.2f}:1"
