"""Script CSVs of the offline renderer: columns, defaults, and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.offline import ScriptError, ScriptRow, read_script


def _write(tmp_path: Path, text: str, name: str = "s.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_rows_with_optional_columns(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "\ufeffid,text,language,avatar\n"
        'a1,"Hello, world.",en,\n'
        "b2,你好，欢迎光临。,,kiosk\n"
        'c3,"Two lines,\nin one cell.",,\n',
    )
    rows = read_script(path)
    assert [r.id for r in rows] == ["a1", "b2", "c3"]
    assert rows[0] == ScriptRow(id="a1", text="Hello, world.", language="en", line=2)
    assert rows[1].language == "zh" and rows[1].avatar == "kiosk"  # detected from the text
    assert rows[2].text == "Two lines,\nin one cell." and rows[2].avatar is None


def test_two_columns_are_enough(tmp_path: Path) -> None:
    rows = read_script(_write(tmp_path, "text,id\nHi there.,x\n"))
    assert rows == [ScriptRow(id="x", text="Hi there.", language="en", line=2)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("id,text\n", "no rows"),
        ("id,words\nx,hi\n", "unknown column(s) 'words'"),
        ("id,language\nx,en\n", "missing column(s) text"),
        ("id,text,id\nx,hi,y\n", "repeats in the header"),
        ("id,text\nx,hi\nx,again\n", "id 'x' repeats line 2"),
        ("id,text\n../evil,hi\n", "must be 1-128 letters"),
        ("id,text\nx,   \n", "text is empty"),
        ("id,text\nx,hi,extra\n", "expected 2 fields"),
        ("id,text,language\nx,hi\n", "expected 3 fields"),
        ("id,text,language\nx,hi,fr\n", "language 'fr' is not one of en, zh"),
        ("id,text,avatar\nx,hi,a/b\n", "path separators"),
        ('id,text\nx,"unterminated\n', "malformed CSV"),
    ],
)
def test_malformed_scripts_name_the_problem(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(ScriptError, match=None) as err:
        read_script(_write(tmp_path, content))
    assert message in str(err.value)
    assert "s.csv" in str(err.value)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ScriptError, match="script not found"):
        read_script(tmp_path / "nope.csv")
    path = tmp_path / "bin.csv"
    path.write_bytes(b"id,text\n\xff\xfe\x00garbage\n")
    with pytest.raises(ScriptError, match="cannot read as UTF-8"):
        read_script(path)
