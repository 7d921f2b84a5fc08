"""``avatar-rtc kb build`` / ``kb query``: progress, skipped files, exit codes, the folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kb_docs import write_store_documents

from inference.dialogue.kb_cli import main
from signaling.cli import main as avatar_rtc


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    write_store_documents(tmp_path / "docs")
    return tmp_path / "docs"


def test_build_shows_progress_and_throughput(
    docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert avatar_rtc(["kb", "build", str(docs), "--out", str(tmp_path / "kb")]) == 0
    out, err = capsys.readouterr()
    assert "kb build" in err and "4/4" in err  # the progress bar
    assert "from 4 files, 5 pages" in out and "pages/s" in out
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert [f["source"] for f in manifest["files"]] == [
        "loyalty.txt",
        "machine-care.md",
        "policies.html",
        "warranty.pdf",
    ]


def test_bad_files_are_reported_and_skipped_the_rest_built(
    docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (docs / "corrupt.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog")
    (docs / "notes.txt").write_bytes(b"\x00\x00binary")
    (docs / ".hidden.md").write_text("# never read")
    missing = tmp_path / "missing.html"
    status = main(["build", str(docs), str(missing), "--out", str(tmp_path / "kb"), "--quiet"])
    out, err = capsys.readouterr()
    assert status == 1
    assert "skipped corrupt.pdf: not a readable PDF" in err
    assert "skipped notes.txt: binary data, not text" in err
    assert f"skipped {missing}: no such file or folder" in err
    assert "3 file(s) skipped" in err
    assert "from 4 files" in out
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    assert {s["source"] for s in manifest["skipped"]} == {"corrupt.pdf", "notes.txt", str(missing)}
    assert ".hidden.md" not in {f["source"] for f in manifest["files"]}


def test_query_shows_the_passages_with_their_source(
    docs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", str(docs), "--out", str(tmp_path / "kb"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["query", str(tmp_path / "kb"), "水泵保修多久", "-k", "1"]) == 0
    out = capsys.readouterr().out
    assert "warranty.pdf, p. 2" in out and "两年保修" in out


def test_rebuild_replaces_but_never_overwrites_another_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first.md", tmp_path / "second.md"
    first.write_text("# Hours\n\nOpen late on Fridays.")
    second.write_text("# Parking\n\nFree parking behind the shop.")
    out = tmp_path / "kb"
    assert main(["build", str(first), "--out", str(out), "--quiet"]) == 0
    assert main(["build", str(second), "--out", str(out), "--quiet"]) == 0
    chunks = (out / "chunks.jsonl").read_text()
    assert "parking" in chunks and "Fridays" not in chunks
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    assert main(["build", str(first), "--out", str(precious), "--quiet"]) == 2
    assert "holds other files" in capsys.readouterr().err
    assert (precious / "thesis.tex").read_text() == "keep me"


def test_nothing_readable_builds_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty.md").write_text("\n\n")
    assert main(["build", str(tmp_path / "empty.md"), "--out", str(tmp_path / "kb")]) == 2
    assert "no text found" in capsys.readouterr().err
    assert not (tmp_path / "kb").exists()
