"""`clay --args-from FILE|-`: the arguments as a JSON list, so a secret in them is not on the command line."""

from __future__ import annotations

import json
import subprocess

from clay_core.cli import main
from tests.helpers.cli import clay_command, clay_env


def test_arguments_from_a_file_run_like_the_same_arguments_given_directly(tmp_path, capsys):
    listed = tmp_path / "args.json"
    listed.write_text(json.dumps(["info", "--json"]))
    assert main(["--args-from", str(listed)]) == 0
    from_file = json.loads(capsys.readouterr().out)
    assert main(["info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["clay_core"] == from_file["clay_core"]


def test_arguments_from_stdin_in_a_real_process():
    done = subprocess.run(
        clay_command("--progress", "json", "--args-from", "-"),
        input=json.dumps(["info", "--json"]),
        env=clay_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert '"clay_core"' in done.stdout


def test_a_file_that_is_not_a_json_list_of_strings_is_one_line_and_exit_2(tmp_path, capsys):
    listed = tmp_path / "args.json"
    listed.write_text('{"info": 1}')
    assert main(["--args-from", str(listed)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "expected a JSON list of strings" in error
    assert main([f"--args-from={tmp_path / 'missing.json'}"]) == 2
    assert "cannot read a JSON list of arguments" in capsys.readouterr().err
