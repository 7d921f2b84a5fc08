"""Real chromium (Debian's, never a downloaded one) against a real ``avatar-rtc serve``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.harness import (
    CHROMIUM,
    ROOT,
    FakeMic,
    free_port,
    launch_chromium,
    run_server,
    write_question_wav,
)

ARTIFACTS = ROOT / "artifacts" / "browser"
QUESTION = "What are your opening hours?"
EMBED_KEY = "pk_embed_test_0123456789abcdef"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the browser tests, saying why, where Debian's chromium is not installed."""
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing (scripts/setup.sh installs it)")
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def host_port() -> int:
    """The port of the third-party test page that embeds the avatar (another origin)."""
    return free_port()


@pytest.fixture(scope="session")
def server(artifacts: Path, host_port: int) -> Iterator[str]:
    # A public embed key bound to the third-party page's origin (which may then frame the
    # kiosk and call the server); keyless callers on loopback (the call page) stay allowed.
    key = {"name": "embed", "key": EMBED_KEY, "origins": [f"http://127.0.0.1:{host_port}"]}
    env = {
        "AVATAR_RTC_ACCESS__KEYS": json.dumps([key]),
        "AVATAR_RTC_ACCESS__ANONYMOUS": "loopback",
    }
    with run_server(log=artifacts / "server.log", env=env) as url:
        yield url


@pytest.fixture(scope="session")
def question(tmp_path_factory: pytest.TempPathFactory) -> FakeMic:
    """Our TTS asking a knowledge-base question after 2 s of silence (the call connects)."""
    return write_question_wav(QUESTION, tmp_path_factory.mktemp("mic") / "question.wav")


@pytest.fixture(scope="session")
def silence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A silent microphone (for tests that type instead of speaking)."""
    import wave

    path = tmp_path_factory.mktemp("mic") / "silence.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(48_000)
        w.writeframes(bytes(2 * 48_000 * 2))
    return path


@pytest.fixture
async def talking_browser(question: FakeMic) -> AsyncIterator[Any]:
    """A browser whose microphone asks ``QUESTION`` once."""
    async with launch_chromium(question.flag_value) as context:
        yield context


@pytest.fixture
async def quiet_browser(silence: Path) -> AsyncIterator[Any]:
    """A browser whose microphone is silent."""
    async with launch_chromium(f"{silence}") as context:
        yield context
