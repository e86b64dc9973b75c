"""Every tool's command line refuses what it cannot take in one line that names the tool and its --help."""

import pytest

from pipeline import lockcheck, report, runs
from pipeline.history import command as history
from pipeline.gate import command as gate


@pytest.mark.parametrize("module, args, what", [
    (history, ["--no-such-option"], "unrecognized arguments: --no-such-option"),
    (lockcheck, ["--no-such-option"], "unrecognized arguments: --no-such-option"),
    (report, ["--no-such-option"], "unrecognized arguments: --no-such-option"),
    (report, ["--runs", "r", "--all-commits"], "argument --all-commits: not allowed with argument --runs"),
    (runs, ["--no-such-option"], "the following arguments are required: command"),
    (runs, ["export", "HEAD", "--all"], "unrecognized arguments: --all"),
    (gate, ["--no-such-option"], "the following arguments are required: mode"),
    (gate, ["compare", "--bogus"], "unrecognized arguments: --bogus"),
    # a subcommand's own error names the subcommand's help
    (gate, ["compare", "--base", "HEAD"], "ambiguous option: --base could match --baseline, --baseline-dir (see "
                                          "python -m pipeline.gate compare --help)"),
], ids=lambda v: getattr(v, "__name__", None))
def test_a_command_line_a_tool_cannot_take_is_one_line_naming_it(module, args, what, in_process, tmp_path):
    code, out, err = in_process(tmp_path, module, *args)
    name = module.__name__.removesuffix(".command")  # a tool that is a package: its command module runs it
    help_ = "" if what.endswith(")") else f" (see python -m {name} --help)"
    assert (code, out, err) == (2, "", f"{name}: error: {what}{help_}\n")
