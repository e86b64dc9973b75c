"""The gate's report: one row per check, and the markdown a pull-request comment shows."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Row:
    metric: str
    baseline: str
    current: str
    change: str
    allowed: str
    passed: bool
    advisory: bool = False  # reported, never fails: timing compared across runs (compare mode)


def markdown(title: str, sections: dict[str, list[Row]], notes: list[str]) -> str:
    lines = [f"## {title}", ""]
    failed = sum(not r.passed for rows in sections.values() for r in rows)
    checks = sum(not r.advisory for rows in sections.values() for r in rows)
    lines += [f"**{'FAIL' if failed else 'PASS'}**: {failed} of {checks} checks failed.", ""]
    for name, rows in sections.items():
        lines += [f"### {name}", "", "| metric | baseline | current | change | allowed | verdict |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {r.metric} | {r.baseline} | {r.current} | {r.change} | {r.allowed} | "
                  f"{'advisory' if r.advisory else 'pass' if r.passed else '**FAIL**'} |" for r in rows]
        lines.append("")
    lines += [f"- {note}" for note in notes]
    return "\n".join(lines).rstrip() + "\n"
