"""Every command answers a bad option or a user error the same way: one `error:` line, exit code 2.

Exit codes (README): 0 done; 2 bad options, config, input or storage settings (nothing ran);
3 videos failed; 4 a run could not finish. A traceback (exit 1) is a bug.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tased_batch.cli.main import app


def _cases(tmp):
    empty = str(tmp / "empty")
    return {
        "demo": ("multiples of 32", ["demo", str(tmp / "d"), "--size", "100x100"]),
        "run": ("'tiff' is not one of", ["run", empty, str(tmp / "out"), "--format", "tiff", "--weights", "random"]),
        "run config": ("config file not found", ["run", "--config", str(tmp / "absent.yaml")]),
        "resume": ("no run found", ["resume", str(tmp / "no-run")]),
        "status": ("no run found", ["status", str(tmp / "no-run")]),
        "submit": ("--address", ["submit", "--", "run", "a", "b"]),
        "jobs": ("--address", ["jobs", "status", "raysubmit_1"]),
        "predict": ("multiples of 32", ["predict", str(tmp / "clip.mp4"), str(tmp / "o"), "--size", "100x100"]),
        "export": ("invalid size", ["export", str(tmp / "no-store"), "clip", str(tmp / "png"), "--size", "0x5"]),
        "evaluate": (
            "ground-truth folder not found",
            ["evaluate", str(tmp / "no-store"), str(tmp / "no-gt"), "--out", str(tmp)],
        ),
        "render": (
            "unknown output type",
            ["render", str(tmp / "no-store"), "clip", "--source", str(tmp / "clip.mp4"), "--out", str(tmp / "o.avi")],
        ),
        "report": ("no run found", ["report", str(tmp / "no-run")]),
        "weights info": ("weights file not found", ["weights", "info", str(tmp / "absent.pt")]),
        "bench": ("even height", ["bench", "--source-size", "33x64"]),
        "storage option": ("not key=value", ["status", str(tmp / "no-run"), "--storage-option", "no-equals-sign"]),
    }


NAMES = list(_cases(Path("/x")))


@pytest.mark.parametrize("name", NAMES)
def test_bad_option_or_user_error_exits_2_with_one_line(name, tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "empty").mkdir()
    expected, args = _cases(tmp_path)[name]
    result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert expected in " ".join(result.output.replace("│", " ").split()), result.output


def test_user_text_is_printed_as_plain_text_not_markup(tmp_path):
    odd = tmp_path / "[bold]run[/bold]"
    result = CliRunner().invoke(app, ["status", str(odd)])
    assert result.exit_code == 2
    assert "[bold]run[/bold]" in result.output
