"""The examples of docs/rate-limits.md marked `<!-- tested -->` run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

PAGE = Path(__file__).resolve().parents[2] / "docs" / "rate-limits.md"
EXAMPLES = re.findall(r"<!-- tested -->\n```python\n(.*?)```", PAGE.read_text(), re.DOTALL)


def test_the_page_has_its_examples() -> None:
    """The OpenAI-style and the Anthropic-style examples are there."""
    assert len(EXAMPLES) == 2


@pytest.mark.parametrize("source", EXAMPLES, ids=["openai", "anthropic"])
def test_example_runs(source: str) -> None:
    """Each example runs to the end, its assertions included."""
    exec(compile(source, str(PAGE), "exec"), {"__name__": "docs_example"})
