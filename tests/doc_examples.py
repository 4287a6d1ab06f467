"""The examples of README.md and docs/*.md, as the tests run them.

A fenced block is run when its info string marks it: ````bash run```` and ````python run```` by
the test suite against a real gateway process, ````python compat```` by ``make compat`` with
eval-protocol's own interpreter. A ````yaml gateway-config```` block is the gateway
configuration (``GATEWAY_CONFIG``) the page's examples run against; a page without one runs
against the gateway as ``make run`` starts it on a fresh clone. Examples name the gateway
``http://localhost:4000``, which is replaced by the test gateway's address. Blocks marked
``no-run`` are shown, never run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOC_GATEWAY = "http://localhost:4000"
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```\s*$", re.MULTILINE | re.DOTALL)


@dataclass(frozen=True, slots=True)
class Block:
    page: Path
    line: int
    language: str
    marks: frozenset[str]
    body: str

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def for_gateway(self, url: str) -> str:
        """The example aimed at ``url`` instead of the documented ``localhost:4000``."""
        return self.body.replace(DOC_GATEWAY, url).replace(DOC_GATEWAY.removeprefix("http://"), url)


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        words = match["info"].split()
        line = text.count("\n", 0, match.start()) + 1
        if words:
            found.append(Block(page, line, words[0], frozenset(words[1:]), match["body"]))
    return found


def runnable(page: Path, mark: str = "run") -> list[Block]:
    return [block for block in blocks(page) if mark in block.marks and block.language in ("bash", "python")]


def gateway_config(page: Path) -> str | None:
    configs = [block.body for block in blocks(page) if block.language == "yaml" and "gateway-config" in block.marks]
    assert len(configs) <= 1, f"{page}: more than one gateway-config block"
    return configs[0] if configs else None
