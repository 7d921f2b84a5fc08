"""Audio features: per-frame windows, and streaming equal to whole-audio computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from musetalk_helpers import speech_like, tiny_models

from inference.render.musetalk import (
    AudioEncoder,
    AudioFeatureStream,
    AudioWindowOptions,
    frame_count,
    windows_for_audio,
)


@pytest.fixture(scope="module")
def encoder() -> AudioEncoder:
    return AudioEncoder(tiny_models())


def test_frame_count_and_window_shape(encoder: AudioEncoder) -> None:
    audio = speech_like(1.01)
    win = windows_for_audio(encoder, audio)
    assert frame_count(len(audio), 25) == 26
    assert win.shape == (26, 10 * encoder.layers, encoder.dim)
    # frame 0 has 2 frames (4 feature frames) of left padding: zeros, layer-minor layout
    assert torch.count_nonzero(win[0, : 4 * encoder.layers]) == 0
    assert torch.count_nonzero(win[0, 4 * encoder.layers :]) > 0
    # the last frame's right padding reaches past the audio: zeros there
    assert torch.count_nonzero(win[-1, -2 * encoder.layers :]) == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_chunked_equals_whole(encoder: AudioEncoder, seed: int) -> None:
    audio = speech_like(2.3, seed=seed)
    whole = windows_for_audio(encoder, audio)
    rng = np.random.default_rng(seed)
    stream = AudioFeatureStream(encoder)
    parts, pos = [], 0
    while pos < len(audio):
        n = int(rng.integers(1, 6000))
        parts.append(stream.push(audio[pos : pos + n]))
        pos += n
    parts.append(stream.end())
    chunked = torch.cat(parts)
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)
    assert sum(p.shape[0] > 0 for p in parts[:-1]) >= 2, "frames must stream before the end"


def test_look_ahead_is_bounded(encoder: AudioEncoder) -> None:
    """A frame is emitted once its block's right context has arrived, not at the end."""
    opts = AudioWindowOptions()
    stream = AudioFeatureStream(encoder, opts)
    need = opts.block_s + opts.right_context_s
    got = stream.push(speech_like(need + 0.001))
    assert got.shape[0] == opts.block // opts.per_frame - opts.right_frames  # 10 - 2


def test_features_are_local(encoder: AudioEncoder) -> None:
    """Changing audio late in the sentence leaves early frames untouched."""
    a = speech_like(3.0, seed=3)
    b = a.copy()
    b[2 * 16000 :] = speech_like(1.0, seed=9)
    wa, wb = windows_for_audio(encoder, a), windows_for_audio(encoder, b)
    torch.testing.assert_close(wa[:20], wb[:20])
    assert not torch.allclose(wa[55:], wb[55:])


def test_float_and_int16_agree(encoder: AudioEncoder) -> None:
    audio = speech_like(0.8)
    a = windows_for_audio(encoder, audio)
    b = windows_for_audio(encoder, audio.astype(np.float32) / 32768.0)
    torch.testing.assert_close(a, b)


def test_bad_inputs(encoder: AudioEncoder) -> None:
    with pytest.raises(ValueError, match="multiple of 20 ms"):
        AudioWindowOptions(block_s=0.05)
    with pytest.raises(ValueError, match="fps must divide"):
        AudioWindowOptions(fps=30)
    with pytest.raises(ValueError, match="exceeds the encoder input"):
        AudioFeatureStream(encoder, AudioWindowOptions(left_context_s=1.8))
    stream = AudioFeatureStream(encoder)
    with pytest.raises(ValueError, match="1-D"):
        stream.push(np.zeros((2, 10), np.int16))
    with pytest.raises(TypeError, match="int16 or float"):
        stream.push(np.zeros(10, np.int32))
    stream.end()
    with pytest.raises(RuntimeError, match="after end"):
        stream.push(np.zeros(10, np.int16))


def test_encode_pads_to_few_shapes_without_changing_results() -> None:
    one = AudioEncoder(tiny_models(), chunk=1)
    eight = AudioEncoder(tiny_models(), chunk=8)
    assert eight.chunk_shapes() == [1, 2, 4, 8]
    assert AudioEncoder(tiny_models(), chunk=6).chunk_shapes() == [1, 2, 4, 6]
    torch.manual_seed(0)
    windows = torch.randn(11, one.window_samples // 8) * 0.1
    for n in (3, 11):  # a tail padded to 4; a full chunk of 8 plus a tail of 3
        got = eight.encode(windows[:n])
        assert got.shape[0] == n
        torch.testing.assert_close(got, one.encode(windows[:n]), rtol=1e-4, atol=1e-4)
