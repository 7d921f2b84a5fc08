"""Throughput of ``avatar-rtc kb build`` on a generated bilingual corpus, in pages per second.

    python scripts/bench_kb.py                      # 24 files of each format, half Chinese
    python scripts/bench_kb.py --files 50 --formats pdf --pdf-pages 20

A page is a PDF page, or 3,000 characters of a Markdown, HTML or text file (the build counts
them the same way). The corpus is written to a temporary folder; the build runs in this
process without a progress bar, the jieba dictionary load included. Besides wall-clock pages/s
it prints pages per CPU second of this process, which other load on the machine moves less.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "inference"))

from kb_docs import minimal_pdf  # noqa: E402

from inference.dialogue.doc_store import DocumentStore  # noqa: E402
from inference.dialogue.documents import CHARS_PER_PAGE  # noqa: E402
from inference.dialogue.kb_cli import BuildOptions, build_documents  # noqa: E402

_EN = (
    "the espresso machine needs descaling every sixty days with citric acid and water",
    "members collect one bean for every dollar and fifty beans buy a free bag",
    "the warranty covers the pump and the boiler for two years from the purchase date",
    "brush the grinder burrs weekly and never wash them with water",
    "we match the price of authorised retailers within fourteen days of purchase",
    "orders above fifty dollars ship free and arrive within three business days",
)
_ZH = (
    "咖啡机每六十天需要用柠檬酸和清水除垢一次",
    "会员每消费一元积一颗咖啡豆五十颗可以兑换一袋免费咖啡",
    "水泵和锅炉自购买之日起享有两年保修",
    "磨豆机的刀盘每周用刷子清洁不要用水冲洗",
    "购买后十四天内如果授权零售商价格更低我们退还差价",
    "订单满五十元包邮三个工作日内送达",
)


def _paragraph(rng: random.Random, chinese: bool) -> str:
    if chinese:
        return "".join(rng.choice(_ZH) + "。" for _ in range(rng.randint(2, 5)))
    return " ".join(rng.choice(_EN).capitalize() + "." for _ in range(rng.randint(2, 5)))


def _text(rng: random.Random, chinese: bool, chars: int) -> list[str]:
    paragraphs: list[str] = []
    while sum(len(p) for p in paragraphs) < chars:
        paragraphs.append(_paragraph(rng, chinese))
    return paragraphs


def _write(folder: Path, fmt: str, n: int, rng: random.Random, args: argparse.Namespace) -> None:
    chinese = n % 2 == 1
    name = folder / f"doc{n:04d}.{fmt}"
    if fmt == "pdf":
        pages = ["\n".join(_text(rng, chinese, 1500)) for _ in range(args.pdf_pages)]
        name.write_bytes(minimal_pdf(pages))
        return
    sections = [_text(rng, chinese, args.text_chars // 4) for _ in range(4)]
    if fmt == "md":
        body = "\n\n".join(f"## Topic {k}\n\n" + "\n\n".join(s) for k, s in enumerate(sections))
    elif fmt == "html":
        parts = [
            f"<h2>Topic {k}</h2>" + "".join(f"<p>{p}</p>" for p in s)
            for k, s in enumerate(sections)
        ]
        body = "<html><body>" + "".join(parts) + "</body></html>"
    else:
        body = "\n\n".join(p for s in sections for p in s)
    name.write_text(body, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=24, help="files of each format")
    parser.add_argument("--formats", default="pdf,md,html,txt", help="comma-separated")
    parser.add_argument("--pdf-pages", type=int, default=10, help="pages of each PDF")
    parser.add_argument("--text-chars", type=int, default=3 * CHARS_PER_PAGE)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-kb-") as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        for fmt in args.formats.split(","):
            for n in range(args.files):
                _write(docs, fmt.strip(), n, rng, args)
        cpu = time.process_time()
        report = build_documents([docs], Path(tmp) / "kb", BuildOptions(progress=False))
        cpu = time.process_time() - cpu
        began = time.perf_counter()
        store = DocumentStore.load(Path(tmp) / "kb")
        load_ms = (time.perf_counter() - began) * 1000
        began = time.perf_counter()
        store.search("how often does the espresso machine need descaling", "en", k=3)
        query_ms = (time.perf_counter() - began) * 1000
    languages = ", ".join(f"{n} {lang}" for lang, n in report.languages.items())
    print(
        f"kb build: {report.files} files, {report.pages} pages, {report.chunks} chunks "
        f"({languages}) in {report.seconds:.2f} s"
    )
    print(f"throughput: {report.pages_per_s:.1f} pages/s ({report.pages / cpu:.1f} per CPU s)")
    print(f"load the folder: {load_ms:.0f} ms; an English query: {query_ms:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
