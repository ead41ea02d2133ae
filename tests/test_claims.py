"""Claims follow from data: every number quoted in the README's Reproduction section, in docs/reproduction.md's
republished part and in a page's findings appears on the published page it cites (the page it links, or, for
findings, its own page above the findings); and each published folder with raw rows (up to ``REBUILD_MAX``)
rebuilds its page byte-identical (``bench leaderboard --from``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parents[1]
LEADERBOARD = ROOT / "leaderboard"
# a quoted number: a decimal (0.1234, +0.0162, -4.966) or a percentage (1.694%), never a bare integer (seeds, years)
NUMBER = re.compile(r"(?<![\w.])[+\-−]?\d+\.\d+%?")
PAGE_LINK = re.compile(r"\]\((?:\.\./)?(leaderboard/[\w.+-]+\.md)(?:#[^)]*)?\)")


def numbers(text: str) -> list[str]:
    """The decimals of ``text``, signs dropped (a page prints -0.0093 where a sentence says "0.0093 lower")."""
    return [n.lstrip("+-−") for n in NUMBER.findall(text.replace("\\", ""))]


def claims(text: str) -> list[str]:
    """The claims of a section: its list items (a line starting with ``- `` and the lines continuing it)."""
    items: list[str] = []
    for line in text.splitlines():
        if line.startswith("- "):
            items.append(line)
        elif items and line.startswith("  ") and line.strip():
            items[-1] += " " + line.strip()
        elif not line.strip():
            items.append("") if items and items[-1] else None
    return [c for c in items if c]


def section(text: str, heading: str, until: str = "\n## ") -> str:
    start = text.index(heading) + len(heading)
    end = text.find(until, start)
    return text[start:] if end < 0 else text[start:end]


def check(claim_list: list[str], default_page: str | None = None) -> None:
    for claim in claim_list:
        pages = PAGE_LINK.findall(claim) or ([default_page] if default_page else [])
        assert pages, f"this claim cites no published page: {claim[:120]}"
        text = "\n".join((ROOT / p).read_text().split("\n## Findings\n")[0] for p in pages)
        visible = text.replace("\\", "")
        missing = [n for n in numbers(claim) if n not in visible]
        assert not missing, f"{missing} quoted but not on {', '.join(pages)}: {claim[:160]}"


def test_readme_reproduction_claims_are_on_their_pages():
    readme = (ROOT / "README.md").read_text()
    found = claims(section(readme, "## Reproduction"))
    assert len(found) >= 3
    check(found)


def test_docs_reproduction_republished_claims_are_on_their_pages():
    text = (ROOT / "docs" / "reproduction.md").read_text().replace("](../leaderboard/", "](leaderboard/")
    republished = section(text, "## Republished pages", until="\n## Pages awaiting republication")
    found = claims(republished)
    assert found
    check(found)


@pytest.mark.parametrize("findings", sorted(LEADERBOARD.glob("*/findings.md")), ids=lambda p: p.parent.name)
def test_findings_quote_only_their_page(findings):
    page = f"leaderboard/{findings.parent.name}.md"
    assert "## Findings\n" in (ROOT / page).read_text()  # the page shows them
    check([line for line in findings.read_text().splitlines() if line.strip()], default_page=page)


def test_claim_checker_catches_a_number_not_on_the_page():
    with pytest.raises(AssertionError, match="0.98765"):
        check(["- MMoE reaches 0.98765 ([p](leaderboard/quickstart.md))"])
    with pytest.raises(AssertionError, match="cites no published page"):
        check(["- MMoE reaches 0.1"])
    check(["- Cross-Stitch's y1 MSE 0.0535 ([quickstart](leaderboard/quickstart.md))"])


# every published folder with raw rows under REBUILD_MAX bytes, so the suite stays in CI time (quickstart, funnel);
# a larger one (mmoe-synthetic, 4 MB of rows and 1.5 MB of curves: about 30 s) is rebuilt by `bench leaderboard
# --from` the same way when it is published
REBUILD_MAX = 2_000_000


@pytest.mark.parametrize("folder", [p.parent for p in sorted(LEADERBOARD.glob("*/rows.parquet"))
                                    if p.stat().st_size < REBUILD_MAX], ids=lambda p: p.name)
def test_published_pages_rebuild_byte_identical(folder, tmp_path):
    assert main(["leaderboard", "--from", str(folder), "--output", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / f"{folder.name}.md").read_text() == (LEADERBOARD / f"{folder.name}.md").read_text()
    for png in sorted(folder.glob("*.png")):
        assert (tmp_path / folder.name / png.name).read_bytes() == png.read_bytes(), png.name
