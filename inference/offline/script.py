"""Script CSVs: one output video per row, columns ``id,text[,language][,avatar]``.

``id`` names the output (``OUT/ID.mp4``): letters, digits, ``_``, ``-`` and ``.``, unique.
``language`` is ``en`` or ``zh`` (empty: detected from the text); ``avatar`` is a prepared
avatar's name (empty: the avatar given on the command line).
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from inference.avatar import InvalidName, validate_name
from inference.dialogue.text import detect_language

from .errors import ScriptError

__all__ = ["LANGUAGES", "ScriptRow", "read_script"]

LANGUAGES = ("en", "zh")
_COLUMNS = ("id", "text", "language", "avatar")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptRow:
    """One row: the output id, the text to speak, its language and the avatar (None: default)."""

    id: str
    text: str
    language: str
    avatar: str | None = None
    line: int = 0  # line of the CSV it came from (for messages)

    def __post_init__(self) -> None:
        if not _ID.fullmatch(self.id) or ".." in self.id:
            raise ValueError(
                f"id {self.id!r} must be 1-128 letters, digits, '_', '-' or '.' "
                "starting with a letter or digit"
            )
        if not self.text.strip():
            raise ValueError("text is empty")
        if self.language not in LANGUAGES:
            raise ValueError(f"language {self.language!r} is not one of {', '.join(LANGUAGES)}")
        if self.avatar is not None:
            validate_name(self.avatar)


def read_script(path: Path, *, max_rows: int = 100_000) -> list[ScriptRow]:
    """Parse and validate a script CSV; ``ScriptError`` names the file, line and problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ScriptError(f"script not found: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"{path}: cannot read as UTF-8 text: {exc}") from exc
    reader = csv.DictReader(io.StringIO(text), strict=True)
    try:
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as exc:
        raise ScriptError(f"{path}: malformed header: {exc}") from exc
    _check_header(path, header)
    reader.fieldnames = header
    rows: list[ScriptRow] = []
    seen: dict[str, int] = {}
    try:
        for record in reader:
            line = reader.line_num
            if None in record or any(record.get(c) is None for c in header):
                raise ScriptError(
                    f"{path}:{line}: expected {len(header)} fields ({', '.join(header)})"
                )
            row = _row(path, line, record)
            if row.id in seen:
                raise ScriptError(f"{path}:{line}: id {row.id!r} repeats line {seen[row.id]}")
            seen[row.id] = line
            rows.append(row)
            if len(rows) > max_rows:
                raise ScriptError(f"{path}: more than {max_rows} rows")
    except csv.Error as exc:
        raise ScriptError(f"{path}:{reader.line_num}: malformed CSV: {exc}") from exc
    if not rows:
        raise ScriptError(f"{path}: no rows after the header")
    return rows


def _check_header(path: Path, header: list[str]) -> None:
    if not header:
        raise ScriptError(f"{path}: empty file (expected a header: id,text[,language][,avatar])")
    unknown = [h for h in header if h not in _COLUMNS]
    if unknown:
        raise ScriptError(
            f"{path}: unknown column(s) {', '.join(map(repr, unknown))}; "
            f"columns are {', '.join(_COLUMNS)}"
        )
    missing = [c for c in ("id", "text") if c not in header]
    if missing:
        raise ScriptError(f"{path}: missing column(s) {', '.join(missing)} in the header")
    if len(set(header)) != len(header):
        raise ScriptError(f"{path}: a column repeats in the header")


def _row(path: Path, line: int, record: dict[str, str]) -> ScriptRow:
    text = record["text"].strip()
    language = (record.get("language") or "").strip().lower() or detect_language(text)
    avatar = (record.get("avatar") or "").strip() or None
    try:
        return ScriptRow(
            id=record["id"].strip(), text=text, language=language, avatar=avatar, line=line
        )
    except (ValueError, InvalidName) as exc:
        raise ScriptError(f"{path}:{line}: {exc}") from exc
