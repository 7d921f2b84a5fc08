from __future__ import annotations

from pathlib import Path

import pytest

from signaling.cli import main
from signaling.config import ConfigError, load_settings


def test_precedence_file_env_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("port: 9001\nmedia:\n  lead_ms: 200\n  end_silence_ms: 700\n")
    monkeypatch.setenv("AVATAR_RTC_MEDIA__LEAD_MS", "90")
    s = load_settings(cfg, {"port": 9002})
    assert s.port == 9002  # CLI over file
    assert s.media.lead_ms == 90  # env over file
    assert s.media.end_silence_ms == 700  # file over default


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("render:\n  fps: 1000\n", "render.fps"),
        ("nonsense_key: 1\n", "nonsense_key"),
        ("- a\n- b\n", "mapping"),
        ("port: [\n", "not valid YAML"),
        ("ice_servers: [{username: x}]\n", "urls"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_settings(cfg)


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(Path("/nonexistent/avatar.yaml"))


def test_config_check_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("api_key: hunter2\n")
    assert main(["config", "--check", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert '"***"' in out


def test_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "docs" / "config.example.yaml"
    assert load_settings(example).render.renderer == "warp"
