"""The README's shell examples, as blocks the test can run.

Convention: every fenced ```bash or ```sh block is run, in order, in one shell
session (variables carry over), against a running demo. A block that cannot run there
says why in an HTML comment on the line before it::

    <!-- not-tested: follows events until Ctrl-C; tests/cli/test_watch.py drives it -->

A ```text block introduced by a line reading ``prints`` holds lines the block before
it must print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
SHELLS = ("bash", "sh")
_FENCE = re.compile(r"^```(\S*)\s*$")
_NOT_TESTED = re.compile(r"^<!--\s*not-tested:\s*(.*?)\s*-->$")


@dataclass
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    body: str
    not_tested: str | None = None  # the reason, when marked
    prints: str | None = None  # what it must print, from a following "prints" block

    @property
    def runs(self) -> bool:
        return self.lang in SHELLS and self.not_tested is None


def blocks(text: str) -> list[Block]:
    """Every fenced block, with its not-tested mark and expected output attached."""
    lines = text.splitlines()
    found: list[Block] = []
    between: list[str] = []  # non-blank lines since the last block closed
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            if lines[i].strip():
                between.append(lines[i].strip())
            i += 1
            continue
        start, body = i, []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        block = Block(start + 1, fence.group(1), "\n".join(body))
        mark = _NOT_TESTED.match(between[-1]) if between else None
        if mark is not None:
            block.not_tested = mark.group(1)
        if block.lang == "text" and between == ["prints"] and found:
            found[-1].prints = block.body
        found.append(block)
        between = []
        i += 1
    return found


def readme_blocks() -> list[Block]:
    return blocks(README.read_text())
