"""FAQ retrieval over the bundled bilingual knowledge base."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from inference.dialogue import FaqDialogue, FaqDialogueOptions, make_dialogue
from inference.dialogue.faq import FaqIndex
from inference.dialogue.knowledge_base import (
    KnowledgeBaseError,
    bundled_knowledge_base_text,
    load_knowledge_base,
)
from inference.types import Transcript


@pytest.fixture(scope="module")
def faq() -> FaqDialogue:
    return FaqDialogue.load()


ENGLISH_PARAPHRASES = [
    ("what time do you open in the morning", "opening_hours"),
    ("are you guys open on sunday", "opening_hours"),
    ("how many days will delivery take", "shipping_times"),
    ("how much do you charge for shipping", "shipping_costs"),
    ("can you send my order to germany", "international_shipping"),
    ("i'd like to send back a jacket i bought", "returns"),
    ("when do i get my money back", "refunds"),
    ("can i swap these shoes for a bigger size", "exchanges"),
    ("how do i track my order", "order_status"),
    ("please cancel the order i just placed", "cancel_order"),
    ("i need to change the shipping address", "change_address"),
    ("do you take paypal", "payment_methods"),
    ("my card keeps getting declined", "payment_failed"),
    ("is my blender still under warranty", "warranty"),
    ("can i buy a gift card for my friend", "gift_cards"),
    ("do you have a coupon code", "discounts"),
    ("i can't remember my password", "account_password"),
    ("what do you do with my personal information", "privacy"),
    ("one of the items is missing from the box", "missing_item"),
    ("let me speak to a person", "contact_human"),
    ("how do i earn reward points", "membership"),
]

CHINESE_PARAPHRASES = [
    ("你们周六开门吗", "opening_hours"),
    ("快递几天能到", "shipping_times"),
    ("我要退货", "returns"),
    ("我想查一下我的快递", "order_status"),
    ("能用支付宝吗", "payment_methods"),
    ("我忘了登录密码", "account_password"),
    ("帮我转人工客服", "contact_human"),
    ("可以开个发票吗", "invoices"),
    ("我想修改收货地址", "change_address"),
    ("保修期多长时间", "warranty"),
]

UNRELATED = [
    "what's the capital of Peru",
    "tell me a joke",
    "who won the football game",
    "秘鲁的首都是哪里",
    "今天天气怎么样",
]


def test_bundled_kb_is_bilingual_and_large_enough(faq: FaqDialogue) -> None:
    entries = faq.entries
    assert len(entries) >= 25
    assert len({e.id for e in entries}) == len(entries)
    for entry in entries:
        assert len(entry.questions["en"]) >= 2 and entry.questions["zh"]
        assert entry.answer("en") and entry.answer("zh")
    assert "Northwind" in bundled_knowledge_base_text()


@pytest.mark.parametrize(("question", "entry_id"), ENGLISH_PARAPHRASES)
def test_english_paraphrases_route_to_their_entry(
    faq: FaqDialogue, question: str, entry_id: str
) -> None:
    found = faq.match(question)
    assert found is not None and found[0] == entry_id, found


@pytest.mark.parametrize(("question", "entry_id"), CHINESE_PARAPHRASES)
def test_chinese_paraphrases_route_to_their_entry(
    faq: FaqDialogue, question: str, entry_id: str
) -> None:
    found = faq.match(question)
    assert found is not None and found[0] == entry_id, found


@pytest.mark.parametrize("question", UNRELATED)
def test_unrelated_questions_get_no_match(faq: FaqDialogue, question: str) -> None:
    assert faq.match(question) is None


async def _collect(faq: FaqDialogue, transcript: Transcript) -> list:
    return [s async for s in faq.reply(transcript)]


async def test_unrelated_question_hears_fallback_in_its_language(faq: FaqDialogue) -> None:
    kb = faq.index.knowledge_base
    en = await _collect(faq, Transcript(text="What's the capital of Peru?"))
    assert " ".join(s.text for s in en) == kb.fallback["en"]
    assert all(s.language == "en" for s in en)
    zh = await _collect(faq, Transcript(text="秘鲁的首都是哪里？", language="zh"))
    assert "".join(s.text for s in zh) == kb.fallback["zh"]
    assert all(s.language == "zh" for s in zh)


async def test_reply_streams_sentences_and_keeps_prices_whole(faq: FaqDialogue) -> None:
    sentences = await _collect(faq, Transcript(text="How much is shipping?"))
    texts = [s.text for s in sentences]
    assert [s.index for s in sentences] == list(range(len(sentences)))
    assert len(texts) == 2
    assert "$4.99" in texts[1] and "$12.99" in texts[1]
    assert " ".join(texts) == faq.index.knowledge_base.entry("shipping_costs").answer("en")


async def test_chinese_text_is_answered_in_chinese_whatever_the_hint(faq: FaqDialogue) -> None:
    sentences = await _collect(faq, Transcript(text="怎么退货？", language="en"))
    assert all(s.language == "zh" for s in sentences)
    assert "".join(s.text for s in sentences) == faq.index.knowledge_base.entry("returns").answer(
        "zh"
    )


async def test_empty_transcript_gets_fallback(faq: FaqDialogue) -> None:
    sentences = await _collect(faq, Transcript(text="  "))
    assert " ".join(s.text for s in sentences) == faq.index.knowledge_base.fallback["en"]


async def test_breaking_out_stops_the_reply(faq: FaqDialogue) -> None:
    gen = faq.reply(Transcript(text="How long does shipping take?"))
    first = await gen.__anext__()
    assert first.index == 0
    await gen.aclose()
    with pytest.raises(StopAsyncIteration):
        await gen.__anext__()


async def test_cancelling_the_consumer_task(faq: FaqDialogue) -> None:
    got: list[str] = []

    async def consume() -> None:
        async for sentence in faq.reply(Transcript(text="How long does shipping take?")):
            got.append(sentence.text)
            await asyncio.sleep(10)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(got) == 1


def test_greeting(faq: FaqDialogue) -> None:
    assert "Northwind" in faq.greeting("en").text
    zh = faq.greeting("zh")
    assert zh.language == "zh" and "您好" in zh.text
    with pytest.raises(ValueError, match="unsupported language"):
        faq.greeting("fr")


def test_threshold_option_turns_matches_into_fallback(faq: FaqDialogue) -> None:
    strict = FaqDialogue(faq.index, FaqDialogueOptions(min_score_en=1000.0))
    assert faq.match("do you take paypal") is not None
    assert strict.match("do you take paypal") is None
    with pytest.raises(ValueError, match="min_score"):
        FaqDialogueOptions(min_score_en=-1)


def test_custom_knowledge_base_file(tmp_path: Path) -> None:
    kb = tmp_path / "kb.yaml"
    kb.write_text(
        """
greeting: {en: "Hi.", zh: "你好。"}
fallback: {en: "Pardon?", zh: "什么？"}
entries:
  - id: parrots
    tags: [bird]
    questions: {en: ["Do you sell parrots?"], zh: ["有鹦鹉吗？"]}
    answer_en: "Yes, we have three parrots."
    answer_zh: "有，我们有三只鹦鹉。"
  - id: hours
    questions: {en: ["When are you open?"], zh: ["几点开门？"]}
    answer_en: "Nine to five."
    answer_zh: "九点到五点。"
""",
        encoding="utf-8",
    )
    # scores are absolute BM25 values, and a tiny knowledge base scores low: lower the bar
    dialogue = make_dialogue(FaqDialogueOptions(kb_path=kb, min_score_en=0.1, min_score_zh=0.1))
    assert isinstance(dialogue, FaqDialogue)
    assert [e.id for e in dialogue.entries] == ["parrots", "hours"]
    found = dialogue.match("which parrots do you sell")
    assert found is not None and found[0] == "parrots"
    found = dialogue.match("鹦鹉多少钱")
    assert found is not None and found[0] == "parrots"
    assert dialogue.match("what's the capital of Peru") is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("[]", "top level"),
        ("greeting: {en: a, zh: b}\nfallback: {en: a, zh: b}\nentries: []", "entries"),
        (
            "greeting: {en: a, zh: b}\nfallback: {en: a, zh: b}\nentries:\n"
            "  - {id: x, questions: {en: [q], zh: [q]}, answer_en: a}",
            "answer_zh",
        ),
        (
            "greeting: {en: a, zh: b}\nfallback: {en: a, zh: b}\nentries:\n"
            "  - {id: x, questions: {en: [q], zh: [q]}, answer_en: a, answer_zh: b}\n"
            "  - {id: x, questions: {en: [q], zh: [q]}, answer_en: a, answer_zh: b}",
            "duplicate entry id",
        ),
        ("greeting: {en: a}\nfallback: {en: a, zh: b}\nentries: []", "greeting.zh"),
        ("a: [b", "invalid YAML"),
    ],
)
def test_bad_knowledge_base_is_a_clear_error(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "kb.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(KnowledgeBaseError, match=message):
        load_knowledge_base(path)


def test_missing_knowledge_base_file(tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match="not found"):
        FaqIndex.load(tmp_path / "nope.yaml")


def test_every_listed_phrasing_reaches_its_own_entry() -> None:
    """A caller who words a question exactly as the knowledge base does gets that answer,
    however common its words are ("Where is my order?" is mostly stopwords)."""
    faq = FaqDialogue.load()
    wrong = []
    for entry in faq.entries:
        for language, phrasings in entry.questions.items():
            for question in phrasings:
                found = faq.match(question, language)
                if found is None or found[0] != entry.id:
                    wrong.append((question, entry.id, found))
    assert not wrong
