"""The command line's top: one line per error, exit status 2 for bad input, 3 for a server that
stayed unreachable (`study.errors.Unreachable`)."""

from __future__ import annotations

import pytest

import study.cli.status as status_cmd
from study.cli import main
from study.errors import Unreachable, UsageError


@pytest.mark.parametrize("error, status", [(UsageError("bad input"), 2),
                                           (Unreachable("the store stayed away"), 3)])
def test_errors_are_one_line_with_their_exit_status(error, status, monkeypatch, capsys):
    def fail(args):
        raise error

    monkeypatch.setattr(status_cmd, "run", fail)
    assert main(["status", "somewhere"]) == status
    err = capsys.readouterr().err
    assert err == f"gmmpvae status: error: {error}\n"
