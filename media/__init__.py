"""The real-time A/V plane of a call: numpy in, aiortc tracks out, and back.

- :mod:`media.clock` — :class:`MediaClock`, one per call (and :class:`ManualClock` for tests)
- :mod:`media.player` — :class:`AvPlayer`, the shared A/V timeline; :class:`IdleLoop`
- :mod:`media.tracks` — :class:`ClockedAudioTrack`, :class:`ClockedVideoTrack` (aiortc)
- :mod:`media.ingest` — :class:`MicIngest`, remote mic → 16 kHz mono 20 ms frames
- :mod:`media.vad` — :class:`Segmenter`, webrtcvad speech segmentation

Submodules are imported explicitly (``from media.player import AvPlayer``) so that importing
one does not pull in aiortc or webrtcvad.
"""
