"""docs/harness.md stays true: its `# example` blocks run, its `# from FILE` blocks match FILE."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "harness.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def _blocks(kind: str) -> list[str]:
    return [b for b in BLOCKS if b.startswith(f"# {kind}")]


def test_every_python_block_is_checked():
    assert BLOCKS and all(b.startswith(("# example\n", "# from ")) for b in BLOCKS)


@pytest.mark.parametrize("block", _blocks("from"), ids=lambda b: b.splitlines()[0][7:])
def test_quoted_blocks_match_the_example_suite(block):
    first, _, body = block.partition("\n")
    source = (ROOT / first[len("# from "):].strip()).read_text()
    assert body.rstrip("\n") in source, f"docs/harness.md quotes {first[7:]} but the file says otherwise"


@pytest.mark.rootless
@pytest.mark.parametrize("block", _blocks("example"), ids=lambda b: b.splitlines()[1][:40])
def test_examples_run(block):
    text = DOC.read_text()
    line = text[:text.index(block)].count("\n")  # tracebacks point into docs/harness.md
    exec(compile("\n" * line + textwrap.dedent(block), str(DOC), "exec"), {"__name__": "docs_example"})
