"""Offline batch rendering: text, audio files or script CSVs → lip-synced MP4s.

Transport-free (no aiortc/aiohttp): TTS from ``inference.tts``, a renderer behind the
``FrameSource`` seam (``WarpFrames`` on the CPU, ``MuseTalkFrames`` on a GPU), PyAV for the
MP4s (H.264 + AAC, written atomically), a sidecar manifest per output so a long script
resumes where it stopped. ``avatar-rtc render`` is :func:`inference.offline.cli.main`.
"""

from .audio_io import Pcm, read_audio_file, synthesize_text
from .avatars import AvatarSource
from .errors import AudioInputError, OfflineError, OfflineInputError, ScriptError
from .frames import FrameSource, WarpFrames
from .manifest import Manifest, job_key
from .mp4 import Mp4Options, Mp4Writer, pick_video_codec
from .pipeline import BatchRenderer, JobResult, RenderFailed, RenderJob, RenderOptions
from .script import ScriptRow, read_script

__all__ = [
    "AudioInputError",
    "AvatarSource",
    "BatchRenderer",
    "FrameSource",
    "JobResult",
    "Manifest",
    "Mp4Options",
    "Mp4Writer",
    "OfflineError",
    "OfflineInputError",
    "Pcm",
    "RenderFailed",
    "RenderJob",
    "RenderOptions",
    "ScriptError",
    "ScriptRow",
    "WarpFrames",
    "job_key",
    "pick_video_codec",
    "read_audio_file",
    "read_script",
    "synthesize_text",
]
