"""``avatar-rtc kb``: turn a business's documents into the knowledge folder the dialogue reads
(``dialogue.documents``), and ask that folder a question.

    avatar-rtc kb build docs/ handbook.pdf --out kb/
    avatar-rtc kb query kb/ "how do I descale the coffee machine"

``build`` reads every Markdown, HTML, text and PDF file named or found in a named folder,
showing its progress; a file it cannot read is reported and skipped, the rest is built.
Exit status: 0 all read, 1 built with some files skipped, 2 nothing built.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference.dialogue.doc_store import (
    DocumentStore,
    DocumentStoreBuilder,
    DocumentStoreError,
    check_replaceable,
)
from inference.dialogue.documents import (
    SUPPORTED_SUFFIXES,
    DocumentError,
    chunk_sections,
    read_document,
)
from inference.dialogue.text import detect_language

__all__ = ["BuildError", "BuildOptions", "BuildReport", "Skipped", "build_documents", "main"]


class BuildError(Exception):
    """Nothing could be built (no readable text, or the output folder cannot be written)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildOptions:
    """``max_tokens``: the size of a chunk; ``progress``: show a progress bar on stderr."""

    max_tokens: int = 200
    progress: bool = True

    def __post_init__(self) -> None:
        if not 16 <= self.max_tokens <= 4000:
            raise ValueError(f"max_tokens must be within 16..4000, got {self.max_tokens}")


@dataclass(frozen=True, slots=True)
class Skipped:
    """A file that was not built, and why."""

    source: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BuildReport:
    """What a build read and wrote; ``pages``: PDF pages plus page-sized runs of text."""

    files: int
    pages: int
    chunks: int
    languages: dict[str, int]
    skipped: tuple[Skipped, ...]
    seconds: float

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class _Inputs:
    files: list[tuple[Path, str]] = field(default_factory=list)  # (path, source label)
    skipped: list[Skipped] = field(default_factory=list)


def _inputs(paths: Sequence[Path]) -> _Inputs:
    """Files named and supported files found under named folders (hidden ones left out)."""
    found = _Inputs()
    seen: set[Path] = set()
    for path in paths:
        if path.is_dir():
            candidates = [(p, p.relative_to(path).as_posix()) for p in _walk(path)]
        elif path.exists():
            candidates = [(path, path.name)]
        else:
            found.skipped.append(Skipped(str(path), "no such file or folder"))
            continue
        for file, label in candidates:
            if file.resolve() not in seen:
                seen.add(file.resolve())
                found.files.append((file, label))
    return found


def _walk(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).parts
        if path.is_file() and path.suffix.lower() in SUPPORTED_SUFFIXES:
            if not any(part.startswith(".") for part in rel):
                yield path


def build_documents(
    paths: Sequence[Path], out: Path, options: BuildOptions | None = None
) -> BuildReport:
    """Read, chunk and index the documents, and write the knowledge folder ``out``."""
    options = options or BuildOptions()
    try:
        check_replaceable(out)  # before the work, not after it
    except DocumentStoreError as exc:
        raise BuildError(str(exc)) from None
    began = time.perf_counter()
    inputs = _inputs(paths)
    for missing in inputs.skipped:
        print(f"skipped {missing.source}: {missing.reason}", file=sys.stderr)
    builder = DocumentStoreBuilder()
    files = _read_all(inputs, builder, options)
    store = builder.build()
    if not store.chunks:
        raise BuildError("no text found in the documents; nothing was written")
    pages = sum(int(f["pages"]) for f in files)
    manifest = {
        "files": files,
        "pages": pages,
        "skipped": [{"source": s.source, "reason": s.reason} for s in inputs.skipped],
    }
    try:
        store.save(out, manifest)
    except (OSError, DocumentStoreError) as exc:
        raise BuildError(f"cannot write {out}: {exc}") from None
    return BuildReport(
        files=len(files),
        pages=pages,
        chunks=len(store.chunks),
        languages=store.languages(),
        skipped=tuple(inputs.skipped),
        seconds=time.perf_counter() - began,
    )


def _read_all(
    inputs: _Inputs, builder: DocumentStoreBuilder, options: BuildOptions
) -> list[dict[str, Any]]:
    """Read and chunk every input into ``builder`` (a progress bar on stderr); a file that
    cannot be read goes to ``inputs.skipped``. Returns what each file read gave."""
    from tqdm import tqdm

    files: list[dict[str, Any]] = []
    bar = tqdm(inputs.files, desc="kb build", unit="file", disable=not options.progress)
    for path, source in bar:
        bar.set_postfix_str(source[-40:], refresh=False)
        try:
            document = read_document(path)
        except DocumentError as exc:
            inputs.skipped.append(Skipped(source, str(exc)))
            bar.write(f"skipped {source}: {exc}", file=sys.stderr)
            continue
        chunks = chunk_sections(document.sections, source, max_tokens=options.max_tokens)
        builder.add(chunks)
        files.append({"source": source, "pages": document.pages, "chunks": len(chunks)})
    bar.close()
    return files


def _build(args: argparse.Namespace) -> int:
    logging.getLogger("pypdf").setLevel(logging.ERROR)  # a skipped file's reason says enough
    try:
        options = BuildOptions(max_tokens=args.chunk_tokens, progress=not args.quiet)
        report = build_documents(args.docs, args.out, options)
    except (BuildError, ValueError) as exc:
        print(f"avatar-rtc kb build: {exc}", file=sys.stderr)
        return 2
    languages = ", ".join(f"{n} {lang}" for lang, n in report.languages.items())
    print(
        f"built {args.out}: {report.chunks} chunks ({languages}) from {report.files} files, "
        f"{report.pages} pages in {report.seconds:.2f} s ({report.pages_per_s:.1f} pages/s)"
    )
    if report.skipped:
        print(f"{len(report.skipped)} file(s) skipped (reasons above)", file=sys.stderr)
    return 1 if report.skipped else 0


def _query(args: argparse.Namespace) -> int:
    try:
        store = DocumentStore.load(args.kb)
    except DocumentStoreError as exc:
        print(f"avatar-rtc kb query: {exc}", file=sys.stderr)
        return 2
    language = args.language or detect_language(args.question)
    matches = store.search(args.question, language, args.k)
    if not matches:
        print("no passage matches")
        return 1
    for match in matches:
        print(f"{match.score:6.2f}  {match.chunk.citation()}")
        print(f"        {store.excerpt(match.chunk, args.question)}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatar-rtc kb", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the knowledge folder from documents")
    build.add_argument("docs", nargs="+", type=Path, metavar="DOCS", help="files or folders")
    build.add_argument("--out", type=Path, required=True, help="the knowledge folder to write")
    build.add_argument("--chunk-tokens", type=int, default=200, help="chunk size (tokens)")
    build.add_argument("--quiet", action="store_true", help="no progress bar")
    build.set_defaults(run=_build)
    query = sub.add_parser("query", help="show the passages that answer a question")
    query.add_argument("kb", type=Path, help="a folder built by 'kb build'")
    query.add_argument("question")
    query.add_argument("--language", choices=["en", "zh"], help="default: from the question")
    query.add_argument("-k", type=int, default=3, help="passages to show")
    query.set_defaults(run=_query)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    raise SystemExit(main())
