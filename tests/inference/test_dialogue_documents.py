"""Document knowledge: reading every format in English and Chinese, the built folder, and the
answers both dialogues give from it (with the source for the caption)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fake_openai import FakeOpenAi
from kb_docs import minimal_pdf, write_store_documents

from inference.dialogue import DIALOGUE_BACKENDS, make_dialogue
from inference.dialogue.doc_store import (
    DocChunk,
    DocumentStore,
    DocumentStoreError,
    check_document_store,
)
from inference.dialogue.documents import DocumentError, Section, chunk_sections, read_document
from inference.dialogue.faq import FaqDialogue, FaqDialogueOptions, FaqIndex
from inference.dialogue.kb_cli import BuildOptions, build_documents
from inference.dialogue.openai_chat import OpenAiChatDialogue, OpenAiChatOptions
from inference.dialogue.prompt import build_messages
from inference.http import HttpTimeouts
from inference.resilience import RetryOptions
from inference.service import ServiceOptions
from inference.types import Transcript


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("documents")
    write_store_documents(root / "docs")
    build_documents([root / "docs"], root / "kb", BuildOptions(progress=False))
    return root / "kb"


@pytest.fixture(scope="module")
def index() -> FaqIndex:
    return FaqIndex.load()


@pytest.fixture(scope="module")
def store(kb: Path) -> DocumentStore:
    return DocumentStore.load(kb)


def _by_source(store: DocumentStore, source: str) -> list[DocChunk]:
    return [c for c in store.chunks if c.source == source]


def test_every_format_is_read_in_both_languages(store: DocumentStore, kb: Path) -> None:
    manifest = check_document_store(kb)
    assert manifest["pages"] == 5  # one per text file, two PDF pages
    assert manifest["skipped"] == []
    assert store.languages()["en"] >= 4 and store.languages()["zh"] >= 4
    for source in ("machine-care.md", "policies.html", "loyalty.txt", "warranty.pdf"):
        assert {c.language for c in _by_source(store, source)} == {"en", "zh"}, source
    md = _by_source(store, "machine-care.md")
    assert [c.section for c in md][:2] == [
        "Espresso machine care > Descaling",
        "Espresso machine care > Cleaning the grinder",
    ]
    assert all("title:" not in c.text for c in md)  # front matter is not text
    html = " ".join(c.text for c in _by_source(store, "policies.html"))
    assert "authorised retailer" in html and "tracking" not in html and "Home" not in html
    pdf = _by_source(store, "warranty.pdf")
    assert [(c.page, c.language) for c in pdf] == [(1, "en"), (2, "zh")]
    assert pdf[1].citation() == "warranty.pdf, p. 2"
    assert "水泵和锅炉享有两年保修" in pdf[1].text


def test_pdf_lines_are_joined_into_paragraphs(tmp_path: Path) -> None:
    path = tmp_path / "wrapped.pdf"
    path.write_bytes(
        minimal_pdf(["Returns\nItems can be returned within thirty days of the delivery\ndate."])
    )
    (section,) = read_document(path).sections
    said = "Items can be returned within thirty days of the delivery date."
    assert section.text == f"Returns\n\n{said}"
    text = tmp_path / "wrapped.txt"
    text.write_text("Parking\n\nThere is free parking\nbehind the shop. Ask at\nthe desk.\n")
    (section,) = read_document(text).sections
    assert section.text == "Parking\n\nThere is free parking behind the shop. Ask at the desk."


def test_long_sections_are_cut_within_the_budget() -> None:
    text = " ".join(f"Sentence number {n} talks about the espresso machine." for n in range(60))
    chunks = chunk_sections([Section(text=text, heading="Care")], "care.md", max_tokens=64)
    assert len(chunks) > 5
    assert all(len(c.text) <= 64 * 4 + 60 for c in chunks)
    assert all(c.section == "Care" and c.language == "en" for c in chunks)


def test_unreadable_files_raise_a_clear_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nthis is not really a PDF")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02")
    image = tmp_path / "photo.jpg"
    image.write_bytes(b"\xff\xd8")
    for path, reason in (
        (broken, "not a readable PDF"),
        (binary, "binary data"),
        (image, "unsupported file type"),
    ):
        with pytest.raises(DocumentError, match=reason):
            read_document(path)


def test_search_finds_the_passage_in_the_question_language(store: DocumentStore) -> None:
    (en,) = store.search("how often should I descale the espresso machine", "en", k=1)
    assert en.chunk.section.endswith("Descaling") and en.coverage >= 0.5
    (zh,) = store.search("咖啡机多久除垢一次", "zh", k=1)
    assert zh.chunk.language == "zh" and "除垢" in zh.chunk.text
    assert store.search("what is the capital of Peru", "en") == []


def test_excerpt_is_short_and_starts_where_the_question_is(store: DocumentStore) -> None:
    (match,) = store.search("is there a free bag of coffee", "en", k=1)
    said = store.excerpt(match.chunk, "is there a free bag of coffee", max_chars=240)
    assert said == "Fifty beans buy a free bag of coffee."
    chunk = DocChunk(text="- See https://example.com/a for more.\n- Call us.", source="x.md")
    assert store.excerpt(chunk, "call") == "Call us."


def test_load_reports_a_folder_that_is_not_built(tmp_path: Path) -> None:
    with pytest.raises(DocumentStoreError, match="avatar-rtc kb build"):
        DocumentStore.load(tmp_path / "missing")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(DocumentStoreError, match="format 99"):
        DocumentStore.load(tmp_path)


def test_faq_answers_from_a_document_with_its_source(kb: Path, index: FaqIndex) -> None:
    faq = FaqDialogue(index, FaqDialogueOptions(documents=kb), DocumentStore.load(kb))
    answer = faq.answer("What is the warranty on the pump?")
    assert answer.source == "warranty.pdf, p. 1"
    assert answer.text.startswith("The Barista Pro espresso machine carries a two year warranty")
    zh = faq.answer("咖啡机多久除垢一次")
    assert zh.language == "zh" and zh.source == "machine-care.md § 咖啡机保养 > 除垢"
    assert zh.text.startswith("Barista Pro 咖啡机每六十天除垢一次。")
    # The FAQ still answers first what it covers, and the fallback stays the fallback.
    hours = faq.answer("what are your opening hours")
    assert hours.source is None and "Monday to Friday" in hours.text
    person = faq.answer("can I talk to a person about the espresso machine warranty pump")
    assert person.intent == "handoff" and person.source is None
    assert faq.answer("what's the capital of Peru").text == faq.answer_text("")[0]


async def test_faq_reply_sentences_carry_the_source(kb: Path) -> None:
    section = DIALOGUE_BACKENDS.configurable()["faq"].model_validate({"documents": kb})
    faq = make_dialogue(section.options())
    reply = faq.reply(Transcript(text="how do I clean the grinder burrs", language="en"))
    sentences = [s async for s in reply]
    assert [s.text for s in sentences] == [
        "Brush the burrs weekly.",
        "Never wash the burrs with water.",
    ]
    cited = {s.source for s in sentences}
    assert cited == {"machine-care.md § Espresso machine care > Cleaning the grinder"}


@pytest.fixture
async def server() -> AsyncIterator[FakeOpenAi]:
    fake = FakeOpenAi(reply=lambda messages: "Descale it every sixty days.")
    yield fake
    await fake.close()


async def test_llm_gets_the_passages_and_their_sources(
    server: FakeOpenAi, index: FaqIndex, store: DocumentStore
) -> None:
    url = await server.start()
    service = ServiceOptions(
        base_url=url,
        timeouts=HttpTimeouts(connect_s=1.0, first_byte_s=1.0, read_s=1.0),
        retry=RetryOptions(attempts=1),
    )
    llm = OpenAiChatDialogue(index, OpenAiChatOptions(service=service), store)
    call = llm.for_call()
    question = Transcript(text="How often should I descale the espresso machine?")
    sentences = [s async for s in call.reply(question)]
    system = server.requests[0][1]["messages"][0]["content"]
    assert "[1] (machine-care.md § Espresso machine care > Descaling) Descale the Barista" in system
    assert "do not read it aloud" in system
    assert [s.text for s in sentences] == ["Descale it every sixty days."]
    assert sentences[0].source is not None
    assert sentences[0].source.startswith("machine-care.md § Espresso machine care > Descaling")
    question_sent = server.requests[0][1]["messages"][-1]["content"]
    assert "Descaling" not in question_sent  # passages go in the system message only


def test_prompt_without_documents_is_unchanged() -> None:
    kw = {
        "system_prompt": "Rules.",
        "persona": "Ava.",
        "store": "Shop",
        "language": "en",
        "kb_entries": [],
        "history": [],
        "user_text": "hi",
        "history_budget": 100,
    }
    plain = build_messages(**kw)  # type: ignore[arg-type]
    assert "No knowledge-base entry matches" in plain[0].content
    chunk = DocChunk(text="Open late on Fridays.", source="hours.txt")
    with_docs = build_messages(**kw, documents=[chunk])  # type: ignore[arg-type]
    assert "No knowledge-base entry matches" not in with_docs[0].content
    assert "[1] (hours.txt) Open late on Fridays." in with_docs[0].content


def test_settings_declare_the_documents_folder(kb: Path) -> None:
    faq = DIALOGUE_BACKENDS.configurable()["faq"].model_validate({"documents": str(kb)})
    assert faq.options().documents == kb
    llm = DIALOGUE_BACKENDS.configurable()["openai"].model_validate(
        {"documents": str(kb), "documents_top_k": 2}
    )
    assert llm.options().documents == kb and llm.options().documents_top_k == 2
