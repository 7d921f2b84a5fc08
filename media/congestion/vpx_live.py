"""A VP8 encoder on libvpx whose bitrate can change without a new keyframe.

FFmpeg's libvpx wrapper (what PyAV and aiortc use) reads the bitrate only when the encoder
opens, so aiortc rebuilds the encoder — and sends a keyframe — on every REMB change. This
module calls the libvpx library that PyAV's wheel ships (``av.libs/libvpx-*.so``) through
ctypes and changes the rate on the live encoder with ``vpx_codec_enc_config_set``.

The configuration struct is declared up to ``kf_max_dist`` (its layout has been stable since
libvpx 1.4); the rest of it is opaque padding. On load the defaults libvpx writes are checked
(320×240, 1/30 s, 256 kbps, max q 63), so a layout that does not match fails loudly with
:class:`VpxError` instead of encoding garbage.
"""

from __future__ import annotations

import collections
import ctypes
import functools
import glob
import multiprocessing
import os

import av
import numpy as np

__all__ = ["VpxError", "VpxVp8Encoder", "libvpx_path", "load_libvpx"]

_VPX_IMG_FMT_I420 = 0x102
_VPX_DL_REALTIME = 1
_VPX_EFLAG_FORCE_KF = 1
_VPX_FRAME_IS_KEY = 1
_VPX_CBR = 1
_VPX_KF_AUTO = 1
_VPX_CODEC_ABI_MISMATCH = 3
_VP8E_SET_CPUUSED = 13
_VP8E_SET_STATIC_THRESHOLD = 17
_VP8E_SET_MAX_INTRA_BITRATE_PCT = 26
_OPAQUE = 8192  # bytes reserved for each libvpx struct we only pass around by pointer


class VpxError(RuntimeError):
    """libvpx could not be loaded or refused an operation."""


class _EncCfg(ctypes.Structure):
    _fields_ = [
        ("g_usage", ctypes.c_uint),
        ("g_threads", ctypes.c_uint),
        ("g_profile", ctypes.c_uint),
        ("g_w", ctypes.c_uint),
        ("g_h", ctypes.c_uint),
        ("g_bit_depth", ctypes.c_int),
        ("g_input_bit_depth", ctypes.c_uint),
        ("g_timebase_num", ctypes.c_int),
        ("g_timebase_den", ctypes.c_int),
        ("g_error_resilient", ctypes.c_uint32),
        ("g_pass", ctypes.c_int),
        ("g_lag_in_frames", ctypes.c_uint),
        ("rc_dropframe_thresh", ctypes.c_uint),
        ("rc_resize_allowed", ctypes.c_uint),
        ("rc_scaled_width", ctypes.c_uint),
        ("rc_scaled_height", ctypes.c_uint),
        ("rc_resize_up_thresh", ctypes.c_uint),
        ("rc_resize_down_thresh", ctypes.c_uint),
        ("rc_end_usage", ctypes.c_int),
        ("rc_twopass_stats_in_buf", ctypes.c_void_p),
        ("rc_twopass_stats_in_sz", ctypes.c_size_t),
        ("rc_firstpass_mb_stats_in_buf", ctypes.c_void_p),
        ("rc_firstpass_mb_stats_in_sz", ctypes.c_size_t),
        ("rc_target_bitrate", ctypes.c_uint),
        ("rc_min_quantizer", ctypes.c_uint),
        ("rc_max_quantizer", ctypes.c_uint),
        ("rc_undershoot_pct", ctypes.c_uint),
        ("rc_overshoot_pct", ctypes.c_uint),
        ("rc_buf_sz", ctypes.c_uint),
        ("rc_buf_initial_sz", ctypes.c_uint),
        ("rc_buf_optimal_sz", ctypes.c_uint),
        ("rc_2pass_vbr_bias_pct", ctypes.c_uint),
        ("rc_2pass_vbr_minsection_pct", ctypes.c_uint),
        ("rc_2pass_vbr_maxsection_pct", ctypes.c_uint),
        ("rc_2pass_vbr_corpus_complexity", ctypes.c_uint),
        ("kf_mode", ctypes.c_int),
        ("kf_min_dist", ctypes.c_uint),
        ("kf_max_dist", ctypes.c_uint),
    ]


class _CxPkt(ctypes.Structure):  # vpx_codec_cx_pkt_t, frame member of the union
    _fields_ = [
        ("kind", ctypes.c_int),
        ("buf", ctypes.c_void_p),
        ("sz", ctypes.c_size_t),
        ("pts", ctypes.c_int64),
        ("duration", ctypes.c_ulong),
        ("flags", ctypes.c_uint32),
    ]


def libvpx_path() -> str:
    """Path of the libvpx shared library shipped in PyAV's wheel (or the system one)."""
    libs = os.path.join(os.path.dirname(os.path.dirname(av.__file__)), "av.libs")
    found = sorted(glob.glob(os.path.join(libs, "libvpx-*.so*")))
    if found:
        return found[0]
    for name in ("libvpx.so.12", "libvpx.so.11", "libvpx.so.9", "libvpx.so"):
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return name
    raise VpxError(f"libvpx not found (looked in {libs} and the system library path)")


class _Lib:
    """The loaded library, its function signatures and the encoder ABI version."""

    def __init__(self, path: str) -> None:
        lib = ctypes.CDLL(path)
        p, u, i, L = ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_long
        lib.vpx_codec_vp8_cx.restype = p
        lib.vpx_codec_enc_config_default.argtypes = [p, p, u]
        lib.vpx_codec_enc_init_ver.argtypes = [p, p, p, L, i]
        lib.vpx_codec_enc_config_set.argtypes = [p, p]
        lib.vpx_codec_encode.argtypes = [p, p, ctypes.c_int64, ctypes.c_ulong, L, ctypes.c_ulong]
        lib.vpx_codec_get_cx_data.argtypes = [p, p]
        lib.vpx_codec_get_cx_data.restype = ctypes.POINTER(_CxPkt)
        lib.vpx_codec_destroy.argtypes = [p]
        lib.vpx_codec_control_.argtypes = [p, i, i]
        lib.vpx_img_wrap.argtypes = [p, i, u, u, u, p]
        lib.vpx_img_wrap.restype = p
        lib.vpx_codec_error_detail.argtypes = [p]
        lib.vpx_codec_error_detail.restype = ctypes.c_char_p
        lib.vpx_codec_err_to_string.argtypes = [i]
        lib.vpx_codec_err_to_string.restype = ctypes.c_char_p
        self.lib = lib
        self.iface = lib.vpx_codec_vp8_cx()
        cfg = self.default_config()
        if (cfg.g_w, cfg.g_h, cfg.g_timebase_num, cfg.g_timebase_den) != (320, 240, 1, 30) or (
            cfg.rc_target_bitrate,
            cfg.rc_max_quantizer,
        ) != (256, 63):
            raise VpxError(f"libvpx at {path} has an unexpected configuration layout")
        self.abi = self._find_abi(cfg)

    def default_config(self) -> _EncCfg:
        buf = ctypes.create_string_buffer(_OPAQUE)
        err = self.lib.vpx_codec_enc_config_default(self.iface, buf, 0)
        if err:
            raise VpxError(f"vpx_codec_enc_config_default failed: {self.err(err)}")
        cfg = _EncCfg.from_buffer(buf)
        cfg._keep = buf  # type: ignore[attr-defined]
        return cfg

    def _find_abi(self, cfg: _EncCfg) -> int:
        # the header's VPX_ENCODER_ABI_VERSION is not exported; the library answers
        # ABI_MISMATCH for every other value, so the right one is found by asking
        for ver in range(1, 200):
            ctx = ctypes.create_string_buffer(_OPAQUE)
            err = self.lib.vpx_codec_enc_init_ver(ctx, self.iface, ctypes.addressof(cfg), 0, ver)
            if err == 0:
                self.lib.vpx_codec_destroy(ctx)
                return ver
            if err != _VPX_CODEC_ABI_MISMATCH:
                raise VpxError(f"vpx_codec_enc_init failed: {self.err(err)}")
        raise VpxError("no libvpx encoder ABI version matched")

    def err(self, code: int) -> str:
        return (self.lib.vpx_codec_err_to_string(code) or b"?").decode()


@functools.cache
def _load() -> _Lib:
    return _Lib(libvpx_path())


def load_libvpx() -> None:
    """Load and check libvpx once per process; raises :class:`VpxError` if unusable."""
    _load()


def _threads(pixels: int) -> int:
    cpus = multiprocessing.cpu_count()
    if pixels > 1280 * 960 and cpus >= 6:
        return 3
    if pixels > 640 * 480 and cpus >= 3:
        return 2
    return 1


class VpxVp8Encoder:
    """One live libvpx VP8 encoder (realtime, CBR, 90 kHz timebase).

    ``encode`` takes a yuv420p frame (even size) and its 90 kHz pts and returns the encoded
    frame (b"" when libvpx dropped it) and whether it is a keyframe. A frame of another size
    re-creates the encoder (a keyframe). ``set_bitrate`` changes the rate of the running
    encoder: no keyframe. Not thread-safe: one caller at a time.

    Rate control caps a keyframe at 3x an average frame, but realtime libvpx codes a scene
    cut as one inter frame of any size (13-20 kB at 256 px and 300 kbps, 0.4 s on a 400 kbps
    link: a freeze and a queue). An inter frame over ``max_frame_ratio`` x the frame's share
    of the bitrate and over 3x the median of the last inter frames (not the one right after a
    keyframe, which refines it) is therefore coded again, as a capped keyframe, by a fresh
    encoder: the running one's rate control has counted the big frame and would starve the
    frames after it (``reencoded`` counts them; ``max_frame_ratio=None``: never).
    """

    def __init__(
        self, width: int, height: int, bitrate: int, *, max_frame_ratio: float | None = 4.0
    ) -> None:
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise ValueError(f"VP8 frame size must be positive and even, got {width}x{height}")
        if max_frame_ratio is not None and max_frame_ratio < 3:
            raise ValueError(
                f"max_frame_ratio must be >= 3 (a keyframe's cap), got {max_frame_ratio}"
            )
        self.max_frame_ratio = max_frame_ratio
        self.reencoded = 0
        self._last_pts: int | None = None
        self._last_key = True
        self._sizes: collections.deque[int] = collections.deque(maxlen=10)  # inter frames
        self._lib = _load()
        self._ctx: ctypes.Array[ctypes.c_char] | None = None
        self._img = ctypes.create_string_buffer(_OPAQUE)
        self._cfg = self._lib.default_config()
        self._bitrate = 0
        self.width, self.height = width, height
        self.set_bitrate(bitrate)
        self._open()

    @property
    def bitrate(self) -> int:
        return self._bitrate

    def set_bitrate(self, bitrate: int) -> None:
        """Target bitrate in bps (>= 10 kbps), applied to the running encoder."""
        if bitrate < 10_000:
            raise ValueError(f"bitrate must be >= 10 kbps, got {bitrate}")
        self._bitrate = int(bitrate)
        self._cfg.rc_target_bitrate = max(1, round(bitrate / 1000))
        if self._ctx is not None:
            self._check(self._lib.lib.vpx_codec_enc_config_set(self._ctx, self._cfg_ptr()))

    def _cfg_ptr(self) -> int:
        return ctypes.addressof(self._cfg)

    def _open(self) -> None:
        c = self._cfg
        c.g_w, c.g_h = self.width, self.height
        c.g_timebase_num, c.g_timebase_den = 1, 90000
        c.g_threads = _threads(self.width * self.height)
        c.g_lag_in_frames = 0
        c.g_error_resilient = 0
        c.rc_end_usage = _VPX_CBR
        c.rc_min_quantizer, c.rc_max_quantizer = 2, 56
        c.rc_undershoot_pct, c.rc_overshoot_pct = 100, 15
        c.rc_buf_sz, c.rc_buf_initial_sz, c.rc_buf_optimal_sz = 1000, 500, 600
        c.rc_dropframe_thresh = 0
        c.kf_mode, c.kf_min_dist, c.kf_max_dist = _VPX_KF_AUTO, 0, 3000
        ctx = ctypes.create_string_buffer(_OPAQUE)
        err = self._lib.lib.vpx_codec_enc_init_ver(
            ctx, self._lib.iface, self._cfg_ptr(), 0, self._lib.abi
        )
        if err:
            raise VpxError(f"vpx_codec_enc_init failed: {self._lib.err(err)}")
        self._ctx = ctx
        control = self._lib.lib.vpx_codec_control_
        self._check(control(ctx, _VP8E_SET_CPUUSED, -6))
        self._check(control(ctx, _VP8E_SET_STATIC_THRESHOLD, 1))
        # cap a keyframe at 3x an average frame: no multi-second burst on a thin link
        self._check(control(ctx, _VP8E_SET_MAX_INTRA_BITRATE_PCT, 300))

    def _check(self, err: int) -> None:
        if err:
            detail = b""
            if self._ctx is not None:
                detail = self._lib.lib.vpx_codec_error_detail(self._ctx) or b""
            raise VpxError(f"libvpx: {self._lib.err(err)} {detail.decode(errors='replace')}")

    def close(self) -> None:
        """Free the encoder (also done on garbage collection)."""
        if getattr(self, "_ctx", None) is not None:  # (None too when __init__ failed)
            self._lib.lib.vpx_codec_destroy(self._ctx)
            self._ctx = None

    def __del__(self) -> None:
        self.close()

    def encode(
        self, frame: av.VideoFrame, pts: int, *, keyframe: bool = False
    ) -> tuple[bytes, bool]:
        """Encode one frame at ``pts`` (90 kHz units). Returns (data, is_keyframe)."""
        if frame.format.name != "yuv420p":
            frame = frame.reformat(format="yuv420p")
        if frame.width % 2 or frame.height % 2:
            raise ValueError(f"VP8 frame size must be even, got {frame.width}x{frame.height}")
        if (frame.width, frame.height) != (self.width, self.height) or self._ctx is None:
            self.close()
            self.width, self.height = frame.width, frame.height
            self._open()
        data = np.ascontiguousarray(frame.to_ndarray())  # (h * 3 / 2, w) planar I420
        img = self._lib.lib.vpx_img_wrap(
            self._img, _VPX_IMG_FMT_I420, self.width, self.height, 1, data.ctypes.data
        )
        if not img:
            raise VpxError("vpx_img_wrap failed")
        # the frame's share of the bitrate: its time since the last one (1/60..0.5 s)
        dt = (
            0.04
            if self._last_pts is None
            else min(0.5, max(1 / 60, (pts - self._last_pts) / 90000))
        )
        self._last_pts = pts
        out, key = self._encode(img, pts, keyframe)
        if (
            not key
            and not self._last_key
            and self.max_frame_ratio is not None
            and len(out) > self.max_frame_ratio * self._bitrate / 8 * dt
            and len(self._sizes) >= 3
            and len(out) > 3 * float(np.median(self._sizes))
        ):
            self.reencoded += 1
            self.close()
            self._open()  # (the wrapped image does not belong to the encoder: it stays)
            out, key = self._encode(img, pts, True)
        if not key and out:
            self._sizes.append(len(out))
        self._last_key = key
        return out, key

    def _encode(self, img: int, pts: int, keyframe: bool) -> tuple[bytes, bool]:
        lib = self._lib.lib
        flags = _VPX_EFLAG_FORCE_KF if keyframe else 0
        self._check(lib.vpx_codec_encode(self._ctx, img, pts, 3600, flags, _VPX_DL_REALTIME))
        out = bytearray()
        key = False
        it = ctypes.c_void_p(None)
        while True:
            pkt = lib.vpx_codec_get_cx_data(self._ctx, ctypes.byref(it))
            if not pkt:
                break
            if pkt.contents.kind == 0:  # VPX_CODEC_CX_FRAME_PKT
                out += ctypes.string_at(pkt.contents.buf, pkt.contents.sz)
                key = key or bool(pkt.contents.flags & _VPX_FRAME_IS_KEY)
        return bytes(out), key
