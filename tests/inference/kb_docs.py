"""Documents for the document-knowledge tests and benchmark: a minimal PDF writer (text pages,
English and Chinese) and a small bilingual set of store documents in every supported format.

The PDF uses a Type 0 font with Identity-H encoding whose ToUnicode map sends each code used
to the same Unicode value (as a real PDF maps only the glyphs it uses), so text is written as
UTF-16 code units and extracts back exactly (nothing renders it; no font file is needed).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["minimal_pdf", "write_store_documents"]


def _to_unicode(chars: set[str]) -> bytes:
    """A ToUnicode CMap mapping the UTF-16 code of each character to itself."""
    codes = sorted({unit for ch in chars for unit in _units(ch)})
    blocks = []
    for start in range(0, len(codes), 100):  # at most 100 entries a block
        part = codes[start : start + 100]
        pairs = b"\n".join(b"<%04X> <%04X>" % (c, c) for c in part)
        blocks.append(b"%d beginbfchar\n" % len(part) + pairs + b"\nendbfchar")
    return (
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Identity-U "
        b"def 1 begincodespacerange <0000> <FFFF> endcodespacerange\n"
        + b"\n".join(blocks)
        + b"\nendcmap CMapName currentdict /CMap defineresource pop end end"
    )


def _units(ch: str) -> list[int]:
    data = ch.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def _stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def _content(text: str) -> bytes:
    ops = [b"BT /F1 11 Tf 50 800 Td 14 TL"]
    for line in text.split("\n"):
        ops.append(b"<" + line.encode("utf-16-be").hex().encode() + b"> Tj T*")
    ops.append(b"ET")
    return b"\n".join(ops)


def minimal_pdf(pages: list[str]) -> bytes:
    """A valid PDF with one page per item of ``pages`` (lines split at newlines)."""
    objs: list[bytes] = []

    def add(obj: bytes) -> int:
        objs.append(obj)
        return len(objs)

    to_unicode = add(_stream(_to_unicode(set("".join(pages)))))
    cid_font = add(
        b"<< /Type /Font /Subtype /CIDFontType0 /BaseFont /STSong-Light "
        b"/CIDSystemInfo << /Registry (Adobe) /Ordering (Identity) /Supplement 0 >> >>"
    )
    font = add(
        b"<< /Type /Font /Subtype /Type0 /BaseFont /STSong-Light /Encoding /Identity-H "
        b"/DescendantFonts [%d 0 R] /ToUnicode %d 0 R >>" % (cid_font, to_unicode)
    )
    contents = [add(_stream(_content(text))) for text in pages]
    pages_id = len(objs) + len(pages) + 1
    kids = [
        add(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842] "
            b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
            % (pages_id, font, content)
        )
        for content in contents
    ]
    refs = b" ".join(b"%d 0 R" % k for k in kids)
    add(b"<< /Type /Pages /Kids [" + refs + b"] /Count %d >>" % len(kids))
    catalog = add(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, obj in enumerate(objs, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\n" % (len(objs) + 1, catalog)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


MARKDOWN = """---
title: Espresso machine care
---
# Espresso machine care

## Descaling

Descale the Barista Pro espresso machine every 60 days. Fill the tank with our citric
descaler and water, then run the steam wand until the tank is empty.

## Cleaning the grinder

Brush the burrs weekly. Never wash the burrs with water.

# 咖啡机保养

## 除垢

Barista Pro 咖啡机每六十天除垢一次。在水箱中加入柠檬酸除垢剂和清水，然后打开蒸汽棒直到水箱排空。
"""

HTML = """<!doctype html>
<html><head><title>Store policies</title><style>p { color: red }</style></head>
<body>
<nav><a href="/">Home</a></nav>
<h1>Store policies</h1>
<h2>Price match</h2>
<p>We match the price of any authorised retailer within 14 days of your purchase.
Send us a link to the lower price and we refund the difference.</p>
<script>var tracking = "price match";</script>
<h2>价格保护</h2>
<p>购买后十四天内，如果授权零售商的价格更低，我们退还差价。</p>
</body></html>
"""

TEXT = """Loyalty club rules

Members collect one bean for every dollar they spend. Fifty beans buy a free bag of coffee.

会员规则

会员每消费一元积一颗咖啡豆，五十颗咖啡豆可以兑换一袋免费咖啡。
"""

PDF_PAGES = [
    "Warranty handbook\n"
    "The Barista Pro espresso machine carries a two year warranty on the pump and boiler.\n"
    "Keep your receipt as proof of purchase.",
    "保修手册\nBarista Pro 咖啡机的水泵和锅炉享有两年保修。请保留购物小票作为购买凭证。",
]


def write_store_documents(folder: Path) -> dict[str, Path]:
    """One document per format in ``folder``; returns them by suffix."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "md": folder / "machine-care.md",
        "html": folder / "policies.html",
        "txt": folder / "loyalty.txt",
        "pdf": folder / "warranty.pdf",
    }
    files["md"].write_text(MARKDOWN, encoding="utf-8")
    files["html"].write_text(HTML, encoding="utf-8")
    files["txt"].write_text(TEXT, encoding="utf-8")
    files["pdf"].write_bytes(minimal_pdf(PDF_PAGES))
    return files
