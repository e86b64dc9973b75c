"""reports/mutation/score.py: which surviving mutants it accepts as changing only documentation."""

import importlib.util

import pytest

from tests.project import ROOT

spec = importlib.util.spec_from_file_location("score", ROOT / "reports" / "mutation" / "score.py")
score = importlib.util.module_from_spec(spec)
spec.loader.exec_module(score)

ADD = 'parser.add_argument("--out", type=Path, default=Path("reports/seeds"), help="output prefix")'
NEW = 'parser = cli.ArgumentParser(prog="python -m pipeline.report", description=__doc__.splitlines()[0])'
SPLIT = 'parser = cli.ArgumentParser(prog="python -m pipeline.gate", description=__doc__.split("\\n\\n")[0])'


@pytest.mark.parametrize("before, after, documentation", [
    (ADD, ADD.replace('help="output prefix"', "help=None"), True),
    (ADD, ADD.replace(', help="output prefix"', ", "), True),
    (ADD, ADD.replace('help="output prefix"', 'help="OUTPUT PREFIX"'), True),
    (NEW, NEW.replace("[0]", "[1]"), True),
    (NEW, NEW.replace(", description=__doc__.splitlines()[0]", ", "), True),
    ('p.add_argument("--out", help=f"where (default {OUT})")', 'p.add_argument("--out", help=None)', True),
    (SPLIT, SPLIT.replace('"\\n\\n"', '"XX\\n\\nXX"'), True),
    (SPLIT.replace("__doc__", "GATE_DOC"), SPLIT.replace("__doc__", "GATE_DOC").replace(
        'description=GATE_DOC.split("\\n\\n")[0]', "description=None"), True),
    (NEW.replace("__doc__", "HISTORY_DOC"), NEW.replace("__doc__", "HISTORY_DOC").replace("[0]", "[1]"), True),
    (ADD.replace(", help", ', metavar="N", help'), ADD.replace(", help", ", metavar=None, help"), True),
    (ADD.replace(", help", ', metavar="N", help'), ADD.replace(", help", ', metavar="XXNXX", help'), True),
    (ADD.replace(", help", ', metavar="N", help'), ADD, True),
    # what changes behaviour is not documentation: the default, the program name in error lines, the flag
    (ADD, ADD.replace('default=Path("reports/seeds")', "default=None"), False),
    (ADD, ADD.replace('"--out"', '"--OUT"'), False),
    (NEW, NEW.replace('prog="python -m pipeline.report"', "prog=None"), False),
    ('print("done", file=sys.stderr)', 'print("XXdoneXX", file=sys.stderr)', False),
    (ADD.replace("output prefix", "default %(default)s"), ADD.replace("output prefix", "DEFAULT %(DEFAULT)S"), False),
])
def test_only_help_and_description_texts_count_as_documentation(before, after, documentation):
    assert score.documentation_only(f"--- a\n+++ b\n-    {before}\n+    {after}\n") is documentation


def test_a_help_text_of_adjacent_literals_counts_as_documentation_but_not_the_line_around_it():
    before = ['ab_ = sub.add_parser("ab", help="interleaved timing of two revs (runs the code of both: "',
              '                                "use it on revisions you trust)",']
    diff = "--- a\n+++ b\n" + "".join(f"-{line}\n" for line in before)
    assert score.documentation_only(diff + '+ab_ = sub.add_parser("ab", help=None,\n')
    assert score.documentation_only(diff + '+ab_ = sub.add_parser("ab", help="XXinterleavedXX" "XXuseXX",\n')
    assert not score.documentation_only(diff + '+ab_ = sub.add_parser("AB", help=None,\n')
