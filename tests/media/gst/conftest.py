"""GStreamer tests run where setup.sh installed GStreamer; elsewhere they skip, saying so."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from media.gst.runtime import GstMissing, gst, missing

try:
    gst()
    _ABSENT = missing(["appsrc", "x264enc", "mpegtsmux", "srtsink", "srtsrc", "avdec_h264"])
    _WHY = f"GStreamer lacks {', '.join(_ABSENT)} (scripts/setup.sh installs it)"
except GstMissing as exc:
    _ABSENT, _WHY = ["gstreamer"], str(exc)

if _ABSENT:
    pytest.skip(_WHY, allow_module_level=True)

from tests.media.gst.synthetic import BurstSource


@pytest.fixture
def bursts() -> Iterator[BurstSource]:
    source = BurstSource()
    yield source
    source.close()


@pytest.fixture(autouse=True)
def _avatarsrc_registered() -> Iterator[None]:
    """avatarsrc, whose own sources (no ``use_source``) fail: these tests give theirs."""
    from media.gst.element import AvatarSrc, register
    from media.gst.source import SourceError, SourceRequest

    def no_factory(request: SourceRequest) -> BurstSource:
        raise SourceError(f"avatar {request.avatar!r}: these tests give sources directly")

    before = AvatarSrc.factory
    register(no_factory)
    yield
    AvatarSrc.factory = before
