import itertools

import numpy as np
import pytest

from media.clock import ManualClock
from media.player import AvPlayer, IdleLoop

SR, FPS = 48000, 25
SPF = SR // FPS  # samples per video frame


def _frames(n: int, value: int = 0) -> list[np.ndarray]:
    return [np.full((4, 6, 3), (value + i) % 256, np.uint8) for i in range(n)]


def _audio(n_frames: int, value: int = 1000) -> np.ndarray:
    return np.arange(n_frames * SPF, dtype=np.int16) % 7 + value


def _player(**kw: float) -> tuple[ManualClock, AvPlayer]:
    clock = ManualClock(start=1.0)
    return clock, AvPlayer(clock=clock, fps=FPS, sample_rate=SR, **kw)  # type: ignore[arg-type]


def test_push_validates() -> None:
    _, p = _player()
    with pytest.raises(ValueError, match="exactly 3840"):
        p.push(np.zeros(100, np.int16), _frames(2))
    with pytest.raises(ValueError, match="at least one"):
        p.push(np.zeros(0, np.int16), [])
    with pytest.raises(ValueError, match="int16"):
        p.push(np.zeros(SPF, np.float32), _frames(1))
    with pytest.raises(ValueError, match="uint8"):
        p.push(np.zeros(SPF, np.int16), [np.zeros((4, 4, 3), np.float32)])


def test_first_push_starts_after_lead_then_gapless() -> None:
    clock, p = _player(lead_s=0.12)
    s1 = p.push(_audio(5, 100), _frames(5, 10))
    assert s1 == pytest.approx(1.12)
    clock.advance(0.1)  # still playing at the next push
    s2 = p.push(_audio(3, 200), _frames(3, 50))
    assert s2 == pytest.approx(s1 + 5 / FPS)  # exactly back to back
    assert p.busy_until == pytest.approx(s2 + 3 / FPS)
    # the boundary sample pair: last of segment 1, first of segment 2
    edge = p.audio_at(s2 - 1 / SR, 2)
    assert edge[0] == _audio(5, 100)[-1] and edge[1] == _audio(3, 200)[0]


def test_push_after_finish_uses_lead_again() -> None:
    clock, p = _player(lead_s=0.1)
    p.push(_audio(2), _frames(2))
    clock.advance(1.0)
    assert p.push(_audio(1), _frames(1)) == pytest.approx(2.12)  # 2.1 on the 40 ms grid


def test_fresh_start_is_rounded_up_to_the_frame_grid() -> None:
    clock, p = _player(lead_s=0.12)
    clock.set(1.01)
    assert p.push(_audio(1), _frames(1)) == pytest.approx(1.16)  # 1.13 → next 40 ms tick
    clock.set(1.19)  # 10 ms left of the first: too close to continue seamlessly
    assert p.push(_audio(1), _frames(1)) == pytest.approx(1.24)


def test_audio_at_mixes_silence_and_segment() -> None:
    _, p = _player(lead_s=0.0)
    s = p.push(_audio(1, 500), _frames(1))
    out = p.audio_at(s - 10 / SR, 20)
    assert (out[:10] == 0).all()
    np.testing.assert_array_equal(out[10:], _audio(1, 500)[:10])
    tail = p.audio_at(s + (SPF - 5) / SR, 10)
    assert (tail[5:] == 0).all() and (tail[:5] != 0).all()


def test_frame_at_and_speaking() -> None:
    _, p = _player(lead_s=0.0)
    frames = _frames(4, 20)
    s = p.push(_audio(4), frames)
    assert p.frame_at(s - 0.001) is None
    for i in range(4):
        got = p.frame_at(s + i / FPS + 0.001)
        assert got is frames[i]
        assert p.frame_at(s + (i + 1) / FPS - 0.001) is frames[i]
    assert p.frame_at(s + 4 / FPS + 0.001) is None
    assert p.speaking(s + 0.05) and not p.speaking(s + 0.2)


def test_video_offset_shifts_lookup() -> None:
    _, p = _player(lead_s=0.0, video_offset_s=0.04)
    frames = _frames(3, 0)
    s = p.push(_audio(3), frames)
    assert p.frame_at(s + 0.001) is None  # video is shown one frame later
    assert p.frame_at(s + 0.041) is frames[0]
    assert p.frame_at(s + 0.121) is frames[2]
    with pytest.raises(ValueError, match="video_offset_s"):
        AvPlayer(clock=ManualClock(), video_offset_s=2.0)


def test_flush_drops_future_media() -> None:
    clock, p = _player(lead_s=0.0)
    s = p.push(_audio(10), _frames(10))  # 0.4 s
    p.push(_audio(5), _frames(5))  # 0.2 s more
    clock.set(s + 0.1)
    dropped = p.flush()
    assert dropped == pytest.approx(0.5)
    assert p.busy_until == pytest.approx(s + 0.1)
    assert (p.audio_at(s + 0.1, 960) == 0).all()
    assert p.frame_at(s + 0.11) is None
    assert p.frame_at(s + 0.09) is not None  # what already played is still there
    # the next push starts fresh after the lead
    assert p.push(_audio(1), _frames(1)) == pytest.approx(s + 0.12)  # on the frame grid
    assert p.flush(at=clock.now() + 10) == 0.0


def test_audio_at_forgets_old_segments() -> None:
    _, p = _player(lead_s=0.0)
    s = p.push(_audio(1), _frames(1))
    p.audio_at(s + 5.0, 10)
    assert p.frame_at(s + 0.01) is None and not p.speaking(s + 0.01)


def test_idle_loop_ping_pong() -> None:
    frames = _frames(4)
    loop = IdleLoop(frames, fps=FPS)
    seq = [loop.index_at((k + 0.5) / FPS) for k in range(12)]
    assert seq == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2, 1]
    assert all(abs(a - b) <= 1 for a, b in itertools.pairwise(seq))  # never jumps
    still = IdleLoop(_frames(1))
    assert {still.index_at(t / 10) for t in range(50)} == {0}
    with pytest.raises(ValueError):
        IdleLoop([])


def test_a_ready_push_starts_after_the_short_lead_then_continues_gaplessly() -> None:
    clock, p = _player(lead_s=0.12, ready_lead_s=0.04)
    assert p.next_ready_start() == pytest.approx(1.04)
    assert p.next_start() == pytest.approx(1.12)
    s1 = p.push_ready(_audio(8), _frames(8))
    assert s1 == pytest.approx(1.04)
    clock.advance(0.1)  # still playing: a ready push continues like any other
    assert p.push_ready(_audio(2), _frames(2)) == pytest.approx(s1 + 8 / FPS)


def test_the_short_lead_never_exceeds_the_lead_nor_undercuts_the_guard() -> None:
    _, p = _player(lead_s=0.0)
    assert p.push_ready(_audio(1), _frames(1)) == pytest.approx(1.0)  # a lead of 0 is kept
    with pytest.raises(ValueError, match="ready_lead_s"):
        _player(ready_lead_s=0.01)
