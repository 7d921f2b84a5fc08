from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from signaling.config import ConfigError, Settings, load_settings
from signaling.preflight import check_startup, startup_problems

_FAKES = {"asr": {"backend": "fake"}, "dialogue": {"backend": "fake"}, "tts": {"backend": "fake"}}


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    base = {
        **_FAKES,
        "render": {"avatars_dir": str(tmp_path / "avatars")},
        "cache": {"dir": str(tmp_path / "cache")},
    }
    return load_settings(None, {**base, **overrides})


def test_the_default_stages_start_here(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    settings = _settings(tmp_path, asr={}, dialogue={}, tts={})  # whisper, faq, piper
    assert startup_problems(settings) == []
    assert not (tmp_path / "cache").exists()  # checked, not made


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"host": "no-such-host.invalid"}, "host: cannot resolve 'no-such-host.invalid'"),
        ({"tts": {"voice": "/nonexistent/v.onnx"}}, "tts (piper): piper voice not found"),
        (
            {"asr": {"backend": "openai", "embedded": {"model_dir": "/nonexistent/w"}}},
            "asr (fallback whisper): whisper model folder not found: /nonexistent/w",
        ),
        (
            {"dialogue": {"backend": "openai", "knowledge_base": "/nonexistent/kb.yaml"}},
            "dialogue (openai): knowledge base file not found: /nonexistent/kb.yaml",
        ),
        ({"render": {"avatar": "bob", "avatars_dir": "/nonexistent"}}, "no prepared avatar 'bob'"),
    ],
)
def test_each_problem_is_named(tmp_path: Path, overrides: dict[str, Any], needle: str) -> None:
    problems = startup_problems(_settings(tmp_path, **overrides))
    assert len(problems) == 1 and needle in problems[0], problems


def test_a_cache_folder_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    settings = _settings(tmp_path, cache={"dir": str(tmp_path / "file" / "cache")})
    with pytest.raises(ConfigError, match=r"cache.dir: .*file is not a folder"):
        check_startup(settings)
    cache_off = settings.cache.model_copy(update={"enabled": False})
    assert startup_problems(settings.model_copy(update={"cache": cache_off})) == []


def test_musetalk_needs_its_files_and_a_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import signaling.stages.musetalk

    (tmp_path / "mt" / "musetalkV15").mkdir(parents=True)
    (tmp_path / "mt" / "musetalkV15" / "unet.pth").write_bytes(b"")
    render = {"renderer": "musetalk", "musetalk_dir": str(tmp_path / "mt")}
    settings = _settings(tmp_path, render=render)
    monkeypatch.setattr(signaling.stages.musetalk, "cuda_devices", lambda: ())
    problems = startup_problems(settings)
    assert problems[0].startswith("render.musetalk_dir: ") and "unet.pth" not in problems[0]
    assert "musetalkV15/musetalk.json, sd-vae/config.json" in problems[0]
    assert problems[1:] == [
        "render.renderer: 'musetalk' needs a CUDA GPU and none is visible (use 'warp')"
    ]
    monkeypatch.setattr(signaling.stages.musetalk, "cuda_devices", lambda: ("cuda:0",))
    no_dir = settings.model_copy(
        update={"render": settings.render.model_copy(update={"musetalk_dir": None})}
    )
    assert startup_problems(no_dir) == [
        "render.musetalk_dir: renderer 'musetalk' needs its weights folder"
    ]
