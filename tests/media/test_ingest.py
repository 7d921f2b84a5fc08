import asyncio

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from media.ingest import INGEST_FRAME_SAMPLES, MicIngest

pytestmark = pytest.mark.timeout(30)


class FakeAudioTrack(MediaStreamTrack):
    """Plays a list of av.AudioFrame, then ends; ``delay`` between frames."""

    kind = "audio"

    def __init__(self, frames: list[av.AudioFrame], delay: float = 0.0) -> None:
        super().__init__()
        self._frames = list(frames)
        self._delay = delay

    async def recv(self) -> av.AudioFrame:
        if not self._frames:
            self.stop()
            raise MediaStreamError
        await asyncio.sleep(self._delay)
        return self._frames.pop(0)


def tone_frames(
    *, rate: int, layout: str, fmt: str, per_frame: int, seconds: float, hz: float = 440.0
) -> list[av.AudioFrame]:
    n = round(rate * seconds)
    x = np.sin(2 * np.pi * hz * np.arange(n) / rate) * 0.5
    channels = 2 if layout == "stereo" else 1
    frames = []
    for i in range(0, n - per_frame + 1, per_frame):
        chunk = x[i : i + per_frame]
        if fmt == "s16":
            data = np.tile((chunk * 32767).astype(np.int16), (channels, 1))
            arr = data.T.reshape(1, -1) if channels == 2 else data  # packed interleaved
        else:  # fltp: planar float
            arr = np.tile(chunk.astype(np.float32), (channels, 1))
        f = av.AudioFrame.from_ndarray(np.ascontiguousarray(arr), format=fmt, layout=layout)
        f.sample_rate = rate
        f.pts = i
        frames.append(f)
    return frames


async def collect(ingest: MicIngest) -> list[np.ndarray]:
    return [f async for f in ingest]


def dominant_hz(x: np.ndarray, rate: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64)))
    return float(np.argmax(spec) * rate / len(x))


@pytest.mark.parametrize(
    ("rate", "layout", "fmt", "per_frame"),
    [
        (48000, "stereo", "s16", 960),  # what aiortc's Opus decoder yields
        (44100, "mono", "s16", 441),
        (48000, "stereo", "fltp", 1024),
        (16000, "mono", "s16", 160),
        (8000, "mono", "s16", 160),
    ],
)
async def test_resamples_to_exact_20ms_frames(
    rate: int, layout: str, fmt: str, per_frame: int
) -> None:
    frames = tone_frames(rate=rate, layout=layout, fmt=fmt, per_frame=per_frame, seconds=1.0)
    ingest = MicIngest(FakeAudioTrack(frames), max_buffered=1000)
    out = await collect(ingest)
    assert all(f.dtype == np.int16 and f.shape == (INGEST_FRAME_SAMPLES,) for f in out)
    total = len(out) * INGEST_FRAME_SAMPLES
    assert 16000 - 2 * INGEST_FRAME_SAMPLES <= total <= 16000
    joined = np.concatenate(out)
    assert abs(dominant_hz(joined[1600:]) - 440) < 5
    assert 0.3 * 32767 < np.abs(joined[1600:]).max() < 0.7 * 32767
    assert ingest.frames_dropped == 0 and ingest.frames_out == len(out)


async def test_format_change_mid_stream() -> None:
    a = tone_frames(rate=48000, layout="stereo", fmt="s16", per_frame=960, seconds=0.5)
    b = tone_frames(rate=44100, layout="mono", fmt="fltp", per_frame=441, seconds=0.5)
    out = await collect(MicIngest(FakeAudioTrack(a + b), max_buffered=1000))
    assert 48 <= len(out) <= 50


async def test_drops_oldest_when_consumer_lags() -> None:
    frames = []
    for i in range(20):  # 16 kHz mono frames, each a constant value i * 10
        f = av.AudioFrame.from_ndarray(
            np.full((1, 320), i * 10, np.int16), format="s16", layout="mono"
        )
        f.sample_rate = 16000
        frames.append(f)
    ingest = MicIngest(FakeAudioTrack(frames), max_buffered=5)
    ingest.start()
    for _ in range(200):  # the consumer is not reading while the track delivers everything
        if ingest.frames_received == 20:
            break
        await asyncio.sleep(0.001)
    assert ingest.buffered == 5
    out = await collect(ingest)
    assert [int(f[0]) for f in out] == [150, 160, 170, 180, 190]  # the newest survive
    assert all((f == f[0]).all() for f in out)
    assert ingest.frames_dropped == 15


async def test_live_consumer_keeps_up_and_close_ends_iteration() -> None:
    frames = tone_frames(rate=48000, layout="stereo", fmt="s16", per_frame=960, seconds=10.0)
    ingest = MicIngest(FakeAudioTrack(frames, delay=0.005))
    got = 0
    async for _ in ingest:
        got += 1
        if got == 30:
            await ingest.close()
    assert 30 <= got <= 32
    assert ingest.frames_dropped == 0


async def test_rejects_video_track_and_surfaces_errors() -> None:
    class Video(MediaStreamTrack):
        kind = "video"

        async def recv(self) -> av.VideoFrame:
            raise MediaStreamError

    with pytest.raises(ValueError, match="audio track"):
        MicIngest(Video())

    class Broken(MediaStreamTrack):
        kind = "audio"

        async def recv(self) -> av.VideoFrame:
            return av.VideoFrame(16, 16, "rgb24")

    with pytest.raises(TypeError, match="AudioFrame"):
        await collect(MicIngest(Broken()))


class SilentTrack(MediaStreamTrack):
    """A live track that never delivers a frame (a call whose media never connected)."""

    kind = "audio"

    async def recv(self) -> av.AudioFrame:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def _receive_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if "MicIngest._receive" in repr(t.get_coro())]


async def test_a_cancelled_consumer_ends_the_receive_task() -> None:
    ingest = MicIngest(SilentTrack())
    consumer = asyncio.ensure_future(collect(ingest))
    await asyncio.sleep(0.01)
    [receive] = _receive_tasks()
    consumer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await consumer
    await asyncio.sleep(0)
    assert receive.done() and not _receive_tasks()


async def test_close_waits_for_the_receive_task() -> None:
    ingest = MicIngest(SilentTrack())
    ingest.start()
    await asyncio.sleep(0.01)
    [receive] = _receive_tasks()
    await ingest.close()
    assert receive.done()
    assert await collect(ingest) == []  # iteration after close ends at once
