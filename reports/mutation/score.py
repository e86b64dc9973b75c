"""The mutation score of each module under `make mutate`, and every surviving mutant with its diff and verdict.

    .venv/bin/python reports/mutation/score.py LABEL     (from the repository root, after `mutmut run`)

Reads mutmut's results (`mutants/pipeline/**/*.py.meta`) and writes, in reports/mutation/:

- `scores-LABEL.csv`: per module, how many mutants, and how many were killed (a test failed), timed out
  (counted as killed: a mutant that hangs the code is caught), survived (every test passed), had no
  test calling the mutated function, or were not checked; the score is (killed + timeout) / mutants;
  and how many of the uncaught ones are argued equivalent or left unexplained;
- `functions-LABEL.csv`: the same counts per mutated function;
- `survivors-LABEL.md`: every mutant that survived or had no test: those without reasoning with their diff,
  then those with the one line of reasoning why it cannot change a verdict, an exit code, a written number or
  a refusal:
  from `equivalent.yaml` (a mutant's name -> {line: the mutated line as the diff shows it, why: the
  reasoning}; a reason whose line no longer matches the mutant is not used), or, for a survivor that
  changes nothing but an argparse help, description or metavar text, `DOCUMENTATION_ONLY`.

Exits 1 when a survivor has no reasoning (a mutant that survives and can change a verdict is a missing
test), when there are no results, or when some mutants were not checked.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections import Counter
from pathlib import Path

import yaml
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
KILLED = ("killed", "timeout")
UNCAUGHT = ("survived", "no tests")
COLUMNS = ("module", "mutants", "killed", "timeout", "survived", "no tests", "not checked", "other", "argued equivalent",
           "unexplained", "score")


def mutated_line(diff: str) -> str:
    """The line the mutant wrote (the diff's first `+` line), stripped."""
    return next((line[1:].strip() for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++")), "")


# An argparse help, description or metavar text: `help="..."` (or adjacent literals "..." "..." that Python
# joins), `help=None`, `metavar="N"`, `description=__doc__.splitlines()[0]` (or `__doc__.split("\n\n")[0]`,
# or a package's docstring imported as `<NAME>_DOC`).
_STRING = r"""(?:f?"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')"""
DOC_ARGUMENT = re.compile(rf"""\b(?:help|description|metavar)=(?:None|{_STRING}(?:\s*{_STRING})*|(?:__doc__|[A-Z][A-Z_]*_DOC)\.split(?:lines)?\((?:"(?:[^"\\]|\\.)*")?\)\[-?\d+\])""")
DOCUMENTATION_ONLY = ("only an argparse help, description or metavar text changes: `--help` and the usage line read "
                      "differently, and no verdict, exit code, written number or refusal depends on it")


def _changed_lines(diff: str, sign: str) -> str:
    body = [line[1:] for line in diff.splitlines() if line.startswith(sign) and not line.startswith(sign * 3)]
    text = re.sub(r"\s+", "", DOC_ARGUMENT.sub("", "".join(body)))
    return re.sub(r",+\)", ")", re.sub(r",{2,}", ",", text))


def documentation_only(diff: str) -> bool:
    """The mutant changes nothing but argparse help, description or metavar texts (or drops one)."""
    # a help text with %-formatting (%(default)s) can make --help fail when mutated: not excused
    return (_changed_lines(diff, "-") == _changed_lines(diff, "+") and DOC_ARGUMENT.search(diff) is not None
            and "%" not in diff)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("label", help="names the output files (e.g. before, after)")
    args = parser.parse_args()
    reasons = yaml.safe_load((HERE / "equivalent.yaml").read_text()) or {}
    rows, survivors, argued, unexplained = [], [], [], 0
    functions: dict[str, Counter] = {}
    for meta in sorted((ROOT / "mutants" / "pipeline").rglob("*.py.meta")):  # packages too (pipeline/gate/)
        module = str(meta.relative_to(ROOT / "mutants"))[:-len(".meta")]
        results = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter(status_by_exit_code[code] for code in results.values())
        known = sum(counts[s] for s in (*KILLED, *UNCAUGHT, "not checked"))
        row = {"module": module, "mutants": len(results), **{s: counts[s] for s in (*KILLED, *UNCAUGHT, "not checked")},
               "other": len(results) - known, "argued equivalent": 0, "unexplained": 0,
               "score": f"{sum(counts[s] for s in KILLED) / len(results):.3f}" if results else ""}
        rows.append(row)
        for name, code in sorted(results.items()):
            status = status_by_exit_code[code]
            function = functions.setdefault(name.rsplit("__mutmut_", 1)[0], Counter())
            function["mutants"] += 1
            function["killed" if status in KILLED else status] += 1
            if status not in UNCAUGHT:
                continue
            diff = get_diff_for_mutant(name, path=ROOT / "mutants" / module)
            reason = reasons.get(name) or {}
            why = reason.get("why") if reason.get("line") == mutated_line(diff) else None
            if why is None and status == "survived" and documentation_only(diff):
                why = DOCUMENTATION_ONLY
            unexplained += why is None
            row["unexplained" if why is None else "argued equivalent"] += 1
            function["unexplained" if why is None else "argued equivalent"] += 1
            if why is None:
                survivors.append(f"### {name} ({status})\n\n```diff\n{diff.strip()}\n```\n")
            else:
                argued.append(f"- `{name}` ({status}): `{mutated_line(diff)}`: {why}")
    total = {"module": "all", **{c: sum(r[c] for r in rows) for c in COLUMNS[1:-1]}}
    total["score"] = f"{(total['killed'] + total['timeout']) / total['mutants']:.3f}" if total["mutants"] else ""
    with (HERE / f"scores-{args.label}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows([*rows, total])
    with (HERE / f"functions-{args.label}.csv").open("w", newline="") as f:
        names = ("function", "mutants", "killed", "survived", "no tests", "not checked", "argued equivalent", "unexplained")
        writer = csv.DictWriter(f, names, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({"function": name, **{k: counts[k] for k in names[1:]}} for name, counts in sorted(functions.items()))
    (HERE / f"survivors-{args.label}.md").write_text(
        f"# Surviving mutants ({args.label})\n\n{len(survivors) + len(argued)} survived or had no test: "
        f"{len(survivors)} without reasoning (each with its diff), then {len(argued)} argued equivalent.\n\n"
        f"## Without reasoning\n\n" + "\n".join(survivors) + "\n## Argued equivalent\n\n" + "\n".join(argued) + "\n")
    for row in [*rows, total]:
        print(f"{row['module']:<22} {row['killed'] + row['timeout']:>5} of {row['mutants']:>5} killed "
              f"(score {row['score']}), {row['survived']} survived, {row['no tests']} without a test, "
              f"{row['argued equivalent']} of these argued equivalent")
    if not rows:
        print("score: no mutmut results under mutants/pipeline: run `mutmut run` first", file=sys.stderr)
        return 1
    if unexplained:
        print(f"score: {unexplained} surviving mutants without reasoning: reports/mutation/survivors-{args.label}.md",
              file=sys.stderr)
        return 1
    if total["not checked"] or total["other"]:
        print(f"score: the run is incomplete: {total['not checked']} mutants not checked, {total['other']} with "
              f"another status", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
