"""The batch pipeline: jobs (text or audio → one MP4 each) through TTS, renderer and encoder.

Per job: the reply audio (TTS of the text, or a decoded audio file), its ``render_input``
for the renderer the ``FrameSource`` makes, frames streamed into an ``Mp4Writer`` (rendering
and encoding overlap in two worker threads), an atomic rename, and — for resumable jobs — the
sidecar manifest. A tqdm bar counts frames over all jobs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from inference.avatar.model import PreparedAvatar
from inference.render.base import frame_count, render_input

from .audio_io import Pcm, read_audio_file, synthesize_text
from .errors import OfflineError, OfflineInputError
from .frames import FrameSource
from .manifest import Manifest, file_sha256, job_key
from .mp4 import Mp4Options, Mp4Writer

if TYPE_CHECKING:
    from inference.tts.base import Tts

__all__ = ["BatchRenderer", "JobResult", "RenderFailed", "RenderJob", "RenderOptions"]


class RenderFailed(OfflineError):
    """Rendering one job failed (the message names the job; the cause is chained)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderOptions:
    """How every job of a run is rendered and encoded."""

    height: int = 512  # output height in pixels; the width follows the avatar's aspect
    mp4: Mp4Options = field(default_factory=Mp4Options)
    keep_going: bool = False  # render the remaining jobs after one fails
    progress: bool = True  # tqdm bar on stderr
    max_audio_s: float = 3600.0

    def __post_init__(self) -> None:
        if not 64 <= self.height <= 2160:
            raise ValueError(f"height must be within 64..2160, got {self.height}")
        if self.max_audio_s <= 0:
            raise ValueError("max_audio_s must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class RenderJob:
    """One output video: ``text`` (spoken in ``language``) or an ``audio`` file."""

    id: str
    out: Path
    avatar: str
    text: str | None = None
    language: str = "en"
    audio: Path | None = None
    resume: bool = False  # skip when the sidecar manifest says this exact job is done

    def __post_init__(self) -> None:
        if (self.text is None) == (self.audio is None):
            raise ValueError("a job needs exactly one of text and audio")
        if self.text is not None and not self.text.strip():
            raise OfflineInputError(f"job {self.id!r}: the text is empty")


@dataclass(frozen=True, slots=True)
class JobResult:
    """What happened to one job."""

    job: RenderJob
    status: Literal["rendered", "skipped", "failed"]
    frames: int = 0
    video_s: float = 0.0
    wall_s: float = 0.0
    error: str = ""


class BatchRenderer:
    """Renders ``RenderJob``s with one frame source, one avatar provider and one TTS.

    ``tts`` is a factory called once, on the first text job (so audio-only runs never load
    a voice). ``tts_description`` enters the resume key of text jobs.
    """

    def __init__(
        self,
        *,
        frames: FrameSource,
        avatars: Callable[[str], PreparedAvatar],
        tts: Callable[[], Tts] | None = None,
        tts_description: str = "",
        options: RenderOptions | None = None,
    ) -> None:
        self.frames = frames
        self.options = options or RenderOptions()
        self._avatars = avatars
        self._tts_factory = tts
        self._tts: Tts | None = None
        self._tts_description = tts_description

    async def run(self, jobs: Sequence[RenderJob]) -> list[JobResult]:
        """Render ``jobs`` in order. Bad input raises ``OfflineInputError`` before anything
        is rendered where it can be seen up front (avatars); a failing job raises
        ``RenderFailed`` unless ``keep_going``, which records it and goes on."""
        from tqdm import tqdm

        for name in dict.fromkeys(job.avatar for job in jobs):
            await asyncio.to_thread(self._avatars, name)
        results: list[JobResult] = []
        with tqdm(
            total=0, unit="frame", disable=not self.options.progress, dynamic_ncols=True
        ) as bar:
            for k, job in enumerate(jobs, 1):
                bar.set_description(f"{job.id} ({k}/{len(jobs)})")
                try:
                    results.append(await self.render(job, bar))
                except OfflineInputError as exc:
                    if not self.options.keep_going:
                        raise
                    results.append(JobResult(job, "failed", error=str(exc)))
                except Exception as exc:
                    if not self.options.keep_going:
                        raise RenderFailed(f"job {job.id!r} failed: {exc}") from exc
                    results.append(JobResult(job, "failed", error=f"{type(exc).__name__}: {exc}"))
        return results

    async def render(self, job: RenderJob, bar: Any = None) -> JobResult:
        """Render one job (or skip it when resumable and already done)."""
        t0 = time.perf_counter()
        avatar = await asyncio.to_thread(self._avatars, job.avatar)
        key = await asyncio.to_thread(self._key, job, avatar) if job.resume else ""
        if job.resume:
            if await asyncio.to_thread(Manifest.is_done, job.out, key):
                return JobResult(job, "skipped")
            await asyncio.to_thread(_remove_stale_temporaries, job.out)
        pcm = await self._audio(job)
        fps = self.frames.fps
        audio_16k = await asyncio.to_thread(render_input, pcm.as_chunk(), fps)
        expected = frame_count(len(audio_16k), fps)
        if bar is not None:
            bar.total += expected
            bar.refresh()
        written = await self._encode(job, avatar, pcm, audio_16k, expected, bar)
        video_s = written / self.frames.fps
        if job.resume:
            manifest = await asyncio.to_thread(
                Manifest.for_file, job.out, key=key, frames=written, duration_s=video_s
            )
            await asyncio.to_thread(manifest.write, job.out)
        return JobResult(job, "rendered", written, video_s, time.perf_counter() - t0)

    def _key(self, job: RenderJob, avatar: PreparedAvatar) -> str:
        fields: dict[str, Any] = {
            "avatar": [avatar.name, avatar.source_hash, avatar.num_frames],
            "renderer": [self.frames.name, self.frames.fps, self.frames.describe()],
            "height": self.options.height,
            "mp4": repr(self.options.mp4),
        }
        if job.audio is not None:
            fields["audio_sha256"] = file_sha256(job.audio) if job.audio.is_file() else ""
        else:
            fields.update(text=job.text, language=job.language, tts=self._tts_description)
        return job_key(fields)

    async def _audio(self, job: RenderJob) -> Pcm:
        if job.audio is not None:
            return await asyncio.to_thread(
                read_audio_file, job.audio, max_seconds=self.options.max_audio_s
            )
        if self._tts is None:
            if self._tts_factory is None:
                raise OfflineInputError("text jobs need a TTS, none was given")
            self._tts = await asyncio.to_thread(self._tts_factory)
        assert job.text is not None
        return await synthesize_text(self._tts, job.text, job.language)

    async def _encode(
        self,
        job: RenderJob,
        avatar: PreparedAvatar,
        pcm: Pcm,
        audio_16k: np.ndarray,
        expected: int,
        bar: Any,
    ) -> int:
        """Stream frames into the MP4 while the next batch renders; returns frames written."""
        queue: asyncio.Queue[list[np.ndarray] | BaseException | None] = asyncio.Queue(maxsize=3)

        async def produce() -> None:
            try:
                renderer = await asyncio.to_thread(
                    self.frames.renderer, avatar, height=self.options.height
                )
                async for batch in renderer.render(audio_16k):
                    await queue.put(batch)
                await queue.put(None)
            except Exception as exc:
                await queue.put(exc)

        producer = asyncio.create_task(produce())
        writer: Mp4Writer | None = None
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                if not item:
                    continue
                if writer is None:
                    h, w = item[0].shape[:2]
                    writer = await asyncio.to_thread(
                        Mp4Writer,
                        job.out,
                        fps=self.frames.fps,
                        size=(w, h),
                        audio=pcm,
                        options=self.options.mp4,
                    )
                await asyncio.to_thread(writer.write, item)
                if bar is not None:
                    bar.update(len(item))
            if writer is None or writer.frames_written != expected:
                got = 0 if writer is None else writer.frames_written
                raise RuntimeError(f"the renderer gave {got} frames, expected {expected}")
            await asyncio.to_thread(writer.commit)
            return writer.frames_written
        finally:
            producer.cancel()
            if writer is not None:
                writer.abort()  # no-op after commit; removes the temporary file otherwise


def _remove_stale_temporaries(out: Path) -> None:
    """Temporary files of ``out`` left by a run that was killed (SIGKILL, power loss)."""
    if out.parent.is_dir():
        for stale in out.parent.glob(f".{out.name}.*.tmp"):
            stale.unlink(missing_ok=True)
