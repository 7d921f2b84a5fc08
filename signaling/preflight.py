"""Start-up checks of a valid configuration on this machine, made without loading a model.

``avatar-rtc serve`` and ``avatar-rtc config --check`` both run :func:`check_startup`: the
access rules the server builds, the address it listens on, its call pages, the files each
speech stage (and its fallback) loads, the avatar, the MuseTalk folder and GPU, the cache
folder, and the HTTPS certificate and key. What only loading shows (a damaged model file)
and a port that another process holds are found when the server starts.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from inference.asr.whisper import (
    WhisperAsrOptions,
    check_whisper_model_dir,
    default_whisper_model_dir,
)
from inference.avatar import DEFAULT_AVATAR_NAME, AvatarStore, InvalidName, validate_name
from inference.dialogue.doc_store import check_document_store
from inference.dialogue.faq import FaqDialogueOptions
from inference.dialogue.knowledge_base import load_knowledge_base
from inference.dialogue.openai_chat import OpenAiChatOptions
from inference.registry import BackendSettings
from inference.tts.espeak import EspeakTts, EspeakTtsOptions
from inference.tts.kokoro_zh import KokoroZhTtsOptions, missing_packages
from inference.tts.piper_tts import PiperTtsOptions, default_piper_voice, resolve_piper_voice
from inference.tts.router import LanguageRouterTtsOptions
from signaling.config import ConfigError, Settings

__all__ = ["check_startup", "startup_problems"]

_STAGES = ("asr", "dialogue", "tts")


def check_startup(settings: Settings) -> None:
    """Raise :class:`ConfigError` naming every problem that would stop the server."""
    problems = startup_problems(settings)
    if problems:
        raise ConfigError("cannot start with this configuration: " + "; ".join(problems))


def startup_problems(settings: Settings) -> list[str]:
    """Each problem that would stop the server, one line each (empty: none)."""
    checks: tuple[Callable[[Settings], Iterator[str]], ...] = (
        _server_state,
        _listen_address,
        _call_pages,
        _stage_files,
        _avatar,
        _renderer,
        _shared_state,
        _cache_dir,
        _tls,
    )
    return [problem for check in checks for problem in check(settings)]


def _server_state(settings: Settings) -> Iterator[str]:
    """The state ``create_app`` builds first: access and host policies, rate limiter."""
    from signaling.server.state import AppState

    try:
        AppState(settings=settings)
    except ValueError as exc:
        yield f"access: {exc}"


def _listen_address(settings: Settings) -> Iterator[str]:
    try:
        socket.getaddrinfo(settings.host, settings.port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, socket.gaierror) else str(exc)
        yield f"host: cannot resolve {settings.host!r} ({reason})"


def _call_pages(settings: Settings) -> Iterator[str]:
    from signaling.server.app import static_dir

    folder = static_dir()
    if not folder.is_dir():
        yield f"the call pages are not installed: no folder {folder}"


def _stage_files(settings: Settings) -> Iterator[str]:
    for stage in _STAGES:
        section: BackendSettings = getattr(settings, stage)
        parts = [(section.backend, section)]
        fallback = section.fallback_section()
        if fallback is not None:
            parts.append((f"fallback {fallback.backend}", fallback))
        for label, part in parts:
            for problem in _option_files(part.options()):
                yield f"{stage} ({label}): {problem}"


def _option_files(options: Any) -> Iterator[str]:
    """What a backend built from ``options`` would miss (nothing for unknown backends)."""
    if isinstance(options, LanguageRouterTtsOptions):
        for route in dict.fromkeys(options.routes.values()):
            yield from _option_files(route)
        return
    check = _FILE_CHECKS.get(type(options))
    if check is None:
        return
    try:
        check(options)
    except (OSError, ValueError) as exc:  # the loaders' own errors name the path
        yield str(exc)


def _whisper(options: WhisperAsrOptions) -> None:
    check_whisper_model_dir(options.model_dir or default_whisper_model_dir())


def _piper(options: PiperTtsOptions) -> None:
    resolve_piper_voice(options.voice or default_piper_voice())


def _espeak(options: EspeakTtsOptions) -> None:
    EspeakTts(options)  # finds the binary; nothing is loaded


def _kokoro(options: KokoroZhTtsOptions) -> None:
    missing = " ".join(missing_packages())
    if missing:
        raise ValueError(f"the Kokoro Mandarin voice needs: pip install {missing}")


def _knowledge_base(options: FaqDialogueOptions | OpenAiChatOptions) -> None:
    load_knowledge_base(options.kb_path)
    if options.documents is not None:
        check_document_store(options.documents)


_FILE_CHECKS: dict[type[Any], Callable[[Any], None]] = {
    WhisperAsrOptions: _whisper,
    PiperTtsOptions: _piper,
    EspeakTtsOptions: _espeak,
    KokoroZhTtsOptions: _kokoro,
    FaqDialogueOptions: _knowledge_base,
    OpenAiChatOptions: _knowledge_base,
}


def _avatar(settings: Settings) -> Iterator[str]:
    r = settings.render
    try:
        name = validate_name(r.avatar)
    except InvalidName as exc:
        yield f"render.avatar: {exc}"
        return
    store = AvatarStore(Path(r.avatars_dir))
    if store.exists(name):
        return
    if name == DEFAULT_AVATAR_NAME:  # prepared into avatars_dir at the first start
        yield from _writable("render.avatars_dir", Path(r.avatars_dir))
        return
    yield (
        f"render.avatar: no prepared avatar {name!r} in {r.avatars_dir} "
        f"(avatar-rtc prepare IMAGE --name {name})"
    )


def _renderer(settings: Settings) -> Iterator[str]:
    r = settings.render
    if r.renderer != "musetalk":
        return
    if r.cluster is not None:  # the render cluster holds the weights and the GPUs
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            yield "render.cluster: needs Ray Serve; install the 'cluster' extra (ray[serve])"
        return
    if r.musetalk_dir is None:
        yield "render.musetalk_dir: renderer 'musetalk' needs its weights folder"
    elif not r.musetalk_dir.is_dir():
        yield f"render.musetalk_dir: no folder {r.musetalk_dir}"
    else:
        from inference.render.musetalk.weights import EXPECTED_FILES

        missing = [
            files
            for files in EXPECTED_FILES
            if not any((r.musetalk_dir / rel).is_file() for rel in files.split("|"))
        ]
        if missing:
            yield f"render.musetalk_dir: {r.musetalk_dir} lacks {', '.join(missing)}"
    from signaling.stages.musetalk import cuda_devices

    if not cuda_devices():
        yield "render.renderer: 'musetalk' needs a CUDA GPU and none is visible (use 'warp')"


def _shared_state(settings: Settings) -> Iterator[str]:
    url = settings.cluster.shared_state
    if url is not None:
        from signaling.server.shared import check_shared_state

        problem = check_shared_state(url)
        if problem is not None:
            yield problem


def _cache_dir(settings: Settings) -> Iterator[str]:
    c = settings.cache
    if c.enabled and c.dir is not None:
        yield from _writable("cache.dir", Path(c.dir))


def _tls(settings: Settings) -> Iterator[str]:
    """The HTTPS certificate and key (or, self-signed, the folder they are made in)."""
    from signaling.server.tls import certificate_problems, tls_options

    options = tls_options(settings)
    if options is None:
        return
    if options.self_signed:
        yield from _writable("data_dir (tls.self_signed)", options.cert.parent)
    else:
        yield from certificate_problems(options.cert, options.key)


def _writable(key: str, folder: Path) -> Iterator[str]:
    """A problem unless ``folder`` is, or can be made, a folder this process writes in."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        yield f"{key}: {existing} is not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        yield f"{key}: cannot write in {existing}"
