"""``avatar-rtc stream``: the plugin path line, and bad arguments refused before any model loads."""

from __future__ import annotations

import pytest

from signaling.cli import main
from signaling.stream.cli import PLUGIN_DIR


def test_print_env_names_the_plugin_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stream", "--print-env"]) == 0
    line = capsys.readouterr().out.strip()
    assert line == f"export GST_PLUGIN_PATH={PLUGIN_DIR}"
    assert (PLUGIN_DIR / "python" / "avatarsrc.py").is_file()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["srt://127.0.0.1:9", "--size", "511x512"], "size must be even"),
        (["http://example.com/live"], "unsupported output URL"),
        (["srt://127.0.0.1:9", "--encoder", "vp8"], "VP8 cannot go into srt"),
        (["srt://127.0.0.1:9", "--fps", "7"], "fps must be within 5..60 and divide 48000"),
    ],
)
def test_bad_arguments_are_clear_errors(
    args: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["stream", *args, "--control", ""]) == 2
    assert error in capsys.readouterr().err
