"""Audio features for MuseTalk: whisper-tiny hidden states, per-frame windows, streaming.

Whisper's encoder attends over its whole input, so "the features of the whole sentence"
would depend on every sample of it and no streaming computation could match them. The
features here are defined block-wise instead: feature frames (50 Hz) are produced in blocks
of ``block_s``; each block is encoded from the audio window
``[block_start - left_context_s, block_end + right_context_s)`` (zeros outside the audio),
placed at the start of the encoder's input as MuseTalk does with its 30 s segments. The
whole-sentence path and the streaming path run exactly these windows, so chunk boundaries
of the incoming audio are invisible in the output; a block is encoded as soon as its right
context has arrived, which bounds the look-ahead.

Per video frame i (25 fps = 2 feature frames) the window is feature frames
[2i - 2*left_frames, 2i + 2*(right_frames + 1)) with zeros outside the audio, flattened
frame-major, layer-minor into (10 * layers) x d tokens: 50 x 384 for whisper-tiny.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from inference.render.musetalk.model import MuseTalkModels

__all__ = [
    "AudioEncoder",
    "AudioFeatureStream",
    "AudioWindowOptions",
    "frame_count",
    "windows_for_audio",
]

SAMPLE_RATE = 16000
FEATURE_HOP = 320  # samples per whisper feature frame (mel hop 160, conv stride 2)
FEATURE_RATE = SAMPLE_RATE // FEATURE_HOP  # 50 Hz


def frame_count(n_samples: int, fps: int) -> int:
    """Video frames covering ``n_samples`` of 16 kHz audio: ceil(n / 16000 * fps)."""
    return -(-n_samples * fps // SAMPLE_RATE)


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioWindowOptions:
    """How feature frames are grouped per video frame and per encoder call."""

    fps: int = 25
    left_frames: int = 2
    right_frames: int = 2
    block_s: float = 0.4
    left_context_s: float = 0.8
    right_context_s: float = 0.4

    def __post_init__(self) -> None:
        if self.fps <= 0 or FEATURE_RATE % self.fps:
            raise ValueError(f"fps must divide {FEATURE_RATE}, got {self.fps}")
        if self.left_frames < 0 or self.right_frames < 0:
            raise ValueError("left_frames and right_frames must be >= 0")
        for name in ("block_s", "left_context_s", "right_context_s"):
            value = getattr(self, name)
            frames = value * FEATURE_RATE
            if value < 0 or abs(frames - round(frames)) > 1e-6:
                raise ValueError(f"{name} must be a non-negative multiple of 20 ms, got {value}")
        if self.block_s <= 0:
            raise ValueError("block_s must be positive")

    @property
    def per_frame(self) -> int:
        return FEATURE_RATE // self.fps

    @property
    def window_features(self) -> int:
        """Feature frames per video frame (10 for MuseTalk)."""
        return self.per_frame * (self.left_frames + self.right_frames + 1)

    @property
    def block(self) -> int:
        return round(self.block_s * FEATURE_RATE)

    @property
    def left(self) -> int:
        return round(self.left_context_s * FEATURE_RATE)

    @property
    def right(self) -> int:
        return round(self.right_context_s * FEATURE_RATE)


class AudioEncoder:
    """Log-mel front end plus the whisper encoder; shared by every stream of a process."""

    def __init__(
        self, models: MuseTalkModels, *, device: torch.device | str | None = None, chunk: int = 0
    ) -> None:
        self._whisper = models.whisper
        self.device = torch.device(device) if device is not None else models.device
        self.dtype = next(self._whisper.parameters()).dtype
        self.layers = models.arch.audio_layers
        self.dim = models.arch.audio_dim
        self.chunk = chunk or (8 if self.device.type == "cuda" else 1)
        fe = models.feature_extractor
        self.window_samples = int(fe.n_samples)
        self._n_fft = int(fe.n_fft)
        self._hop = int(fe.hop_length)
        self._filters = torch.from_numpy(models.mel_filters()).to(self.device)
        self._window = torch.hann_window(self._n_fft, device=self.device)

    def log_mel(self, audio: torch.Tensor) -> torch.Tensor:
        """(n, samples) float32 in [-1, 1], padded to the encoder's input -> (n, mels, frames)."""
        if audio.ndim != 2 or audio.shape[1] > self.window_samples:
            raise ValueError(
                f"audio windows must be (n, <= {self.window_samples}), got {tuple(audio.shape)}"
            )
        audio = torch.nn.functional.pad(audio, (0, self.window_samples - audio.shape[1]))
        stft = torch.stft(audio, self._n_fft, self._hop, window=self._window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        mel = torch.clamp(self._filters.T @ power, min=1e-10).log10()
        peak = mel.amax(dim=(1, 2), keepdim=True)
        mel = torch.maximum(mel, peak - 8.0)
        return (mel + 4.0) / 4.0

    def chunk_shapes(self) -> list[int]:
        """The batch sizes ``encode`` runs the encoder at: powers of two below ``chunk``,
        and ``chunk`` itself (warm them all up before the first call)."""
        sizes, c = [], 1
        while c < self.chunk:
            sizes.append(c)
            c *= 2
        return [*sizes, self.chunk]

    def _padded(self, n: int) -> int:
        return next(c for c in self.chunk_shapes() if c >= n)

    @torch.inference_mode()
    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """(n, samples) windows -> (n, positions, layers, dim) hidden states (all layers).

        Runs in chunks of ``chunk`` windows, the last one zero-padded to the next of
        ``chunk_shapes``, so the device sees few input shapes (no cuDNN autotuning or FFT
        planning in the middle of a call) and a short tail costs little."""
        outs = []
        for part in windows.split(self.chunk):
            n = part.shape[0]
            pad = self._padded(n) - n
            if pad:
                part = torch.cat([part, part.new_zeros(pad, part.shape[1])])
            mel = self.log_mel(part.to(self.device, torch.float32)).to(self.dtype)
            out = self._whisper(mel, output_hidden_states=True)
            outs.append(torch.stack(out.hidden_states, dim=2)[:n])
        return torch.cat(outs)


class AudioFeatureStream:
    """Per-sentence (or per-turn) feature stream: push PCM chunks, get per-frame windows.

    ``push`` returns the windows (k, window_features * layers, dim) of the frames that became
    ready; ``end`` the rest, after which the total is ``frame_count(samples, fps)``.
    """

    def __init__(self, encoder: AudioEncoder, options: AudioWindowOptions | None = None) -> None:
        self._enc = encoder
        self.options = options or AudioWindowOptions()
        span = self.options.left + self.options.block + self.options.right
        if span * FEATURE_HOP > encoder.window_samples:
            raise ValueError(
                f"block plus context ({span * FEATURE_HOP / SAMPLE_RATE:.2f} s) exceeds the "
                f"encoder input ({encoder.window_samples / SAMPLE_RATE:.2f} s)"
            )
        self._audio = np.zeros(0, dtype=np.float32)
        self._audio_start = 0  # global sample index of self._audio[0]
        self._samples = 0
        self._feats: list[torch.Tensor] = []  # computed blocks, (block, layers, dim) each
        self._next_block = 0
        self._next_frame = 0
        self._ended = False

    @property
    def frames_emitted(self) -> int:
        return self._next_frame

    @property
    def samples(self) -> int:
        return self._samples

    def push(self, pcm: np.ndarray, *, last: bool = False) -> torch.Tensor:
        """Add 16 kHz mono audio (int16 or float in [-1, 1]); return newly ready frames.

        ``last``: this is the end of the audio (as ``end()`` right after, with every block
        encoded in one encoder call)."""
        if self._ended:
            raise RuntimeError("push() after end()")
        if pcm.ndim != 1:
            raise ValueError(f"audio must be 1-D mono, got shape {pcm.shape}")
        if pcm.dtype == np.int16:
            chunk = pcm.astype(np.float32) / 32768.0
        elif np.issubdtype(pcm.dtype, np.floating):
            chunk = pcm.astype(np.float32)
        else:
            raise TypeError(f"audio must be int16 or float, got {pcm.dtype}")
        self._audio = np.concatenate([self._audio, chunk])
        self._samples += len(chunk)
        self._ended = last
        self._encode_ready()
        return self._emit()

    def end(self) -> torch.Tensor:
        """Mark the end of the audio and return the remaining frames."""
        if not self._ended:
            self._ended = True
            self._encode_ready()
        return self._emit()

    def _block_ready(self, k: int) -> bool:
        o = self.options
        if self._ended:
            return k * o.block < self._total_features()
        return self._samples >= ((k + 1) * o.block + o.right) * FEATURE_HOP

    def _total_features(self) -> int:
        return -(-self._samples // FEATURE_HOP)

    def _window(self, k: int) -> np.ndarray:
        o = self.options
        start = (k * o.block - o.left) * FEATURE_HOP
        stop = ((k + 1) * o.block + o.right) * FEATURE_HOP
        out = np.zeros(stop - start, dtype=np.float32)
        lo, hi = max(start, self._audio_start), min(stop, self._samples)
        if hi > lo:
            a = lo - self._audio_start
            out[lo - start : hi - start] = self._audio[a : a + hi - lo]
        return out

    def _encode_ready(self) -> None:
        o = self.options
        blocks: list[int] = []
        k = self._next_block
        while self._block_ready(k):
            blocks.append(k)
            k += 1
        if not blocks:
            return
        windows = torch.from_numpy(np.stack([self._window(b) for b in blocks]))
        hidden = self._enc.encode(windows)[:, o.left : o.left + o.block]
        total = self._total_features()
        for b, feats in zip(blocks, hidden, strict=True):
            valid = total - b * o.block
            if valid < o.block:
                feats = feats.clone()
                feats[max(valid, 0) :] = 0
            self._feats.append(feats)
        self._next_block = k
        keep_from = (self._next_block * o.block - o.left) * FEATURE_HOP
        if keep_from > self._audio_start:
            drop = keep_from - self._audio_start
            self._audio = self._audio[drop:]
            self._audio_start = keep_from

    def _emit(self) -> torch.Tensor:
        o = self.options
        computed = len(self._feats) * o.block
        n_frames = frame_count(self._samples, o.fps) if self._ended else None
        pf, wf = o.per_frame, o.window_features
        ready: list[int] = []
        i = self._next_frame
        while True:
            if n_frames is not None:
                if i >= n_frames:
                    break
            elif pf * (i + o.right_frames + 1) > computed:
                break
            ready.append(i)
            i += 1
        layers, dim = self._enc.layers, self._enc.dim
        dev, dt = self._enc.device, self._enc.dtype
        if not ready:
            return torch.zeros(0, wf * layers, dim, device=dev, dtype=dt)
        # one gather: zeros before the audio and past what is computed (or past its end)
        left = pf * o.left_frames
        feats = torch.cat(self._feats) if self._feats else torch.zeros(0, layers, dim, device=dev)
        padded = torch.cat(
            [
                torch.zeros(left, layers, dim, device=dev, dtype=dt),
                feats[:computed].to(dt),
                torch.zeros(pf * (i - self._next_frame) + wf, layers, dim, device=dev, dtype=dt),
            ]
        )
        starts = torch.tensor(ready, device=dev) * pf
        index = starts[:, None] + torch.arange(wf, device=dev)[None, :]
        self._next_frame = i
        return padded[index].reshape(len(ready), wf * layers, dim)


def windows_for_audio(
    encoder: AudioEncoder, audio: np.ndarray, options: AudioWindowOptions | None = None
) -> torch.Tensor:
    """All per-frame windows of one whole piece of audio (the same as pushing it in any
    chunks, then ``end``), from one encoder call for all of its blocks."""
    return AudioFeatureStream(encoder, options).push(audio, last=True)
