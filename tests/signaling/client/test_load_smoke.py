"""scripts/load.py runs: one level against an in-process server, then the call beyond the cap."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType

from aiohttp import web

from signaling.config import Settings
from signaling.server.app import create_app
from signaling.stages.services import Services

ROOT = Path(__file__).resolve().parents[3]
Serve = Callable[[web.Application], Awaitable[str]]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("load_script", ROOT / "scripts" / "load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def test_load_script_reports_a_level_and_a_clean_503(
    settings: Settings, fake_services: Services, serve: Serve
) -> None:
    load = _load_script()
    url = await serve(
        create_app(settings.model_copy(update={"max_sessions": 1}), services=fake_services)
    )
    args = argparse.Namespace(cap=1, max_n=1, min_fps=20.0, timeout_s=20.0)
    result = await load.run(url, args)
    assert result["levels"][1]["calls"][0]["reply"]
    assert result["largest_n"] == 1
    assert result["beyond_cap"]["clean_503"], result["beyond_cap"]
