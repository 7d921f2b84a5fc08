"""The avatar's cached VAE latents and blend inputs, resident on the render device.

Computed once per prepared avatar and shared by every call that shows it. For source
frame n: the 256x256 face crop (RGB, [-1, 1]); the UNet's 8 reference channels (the crop
with its lower half blacked out, then the crop itself, both VAE-encoded and scaled by
0.18215, as MuseTalk does); the feathered mask; the crop box; the full frame as uint8.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from inference.avatar.model import PreparedAvatar
from inference.render.musetalk.config import CROP_SIZE, LATENT_SCALE
from inference.render.musetalk.model import MuseTalkModels

__all__ = ["AvatarLatents", "crop_faces", "encode_avatar"]

_MASK_EPS = 1.0 / 255.0


@dataclass(frozen=True, slots=True)
class AvatarLatents:
    """Device tensors of one avatar; ``N`` source frames of ``H`` x ``W``."""

    name: str
    unet_ref: torch.Tensor  # (N, 8, 32, 32) compute dtype
    crops: torch.Tensor  # (N, 3, 256, 256) compute dtype in [0, 1]
    masks: torch.Tensor  # (N, 1, 256, 256) compute dtype in [0, 1]
    boxes: torch.Tensor  # (N, 4) float32 x0, y0, x1, y1 (on the CPU: read without a sync)
    frames: torch.Tensor  # (N, H, W, 3) uint8
    mask_box: tuple[int, int, int]  # top, left, right (exclusive) crop pixels of any mask > 0

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the source frames."""
        return int(self.frames.shape[2]), int(self.frames.shape[1])


def _check_avatar(avatar: PreparedAvatar) -> None:
    n = avatar.num_frames
    if avatar.frames.ndim != 4 or avatar.frames.shape[3] != 3 or avatar.frames.dtype != np.uint8:
        raise ValueError(f"avatar {avatar.name!r}: frames must be (N, H, W, 3) uint8")
    if avatar.crop_boxes.shape != (n, 4):
        raise ValueError(f"avatar {avatar.name!r}: crop_boxes must be ({n}, 4)")
    if avatar.masks.shape != (n, CROP_SIZE, CROP_SIZE):
        raise ValueError(f"avatar {avatar.name!r}: masks must be ({n}, {CROP_SIZE}, {CROP_SIZE})")
    w, h = avatar.size
    boxes = avatar.crop_boxes.astype(np.int64)
    bad = (boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > w) | (boxes[:, 3] > h)
    bad |= (boxes[:, 2] - boxes[:, 0] < 8) | (boxes[:, 3] - boxes[:, 1] < 8)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"avatar {avatar.name!r}: crop box {i} {boxes[i].tolist()} is empty or outside the "
            f"{w}x{h} frame"
        )


def crop_faces(avatar: PreparedAvatar) -> np.ndarray:
    """(N, 256, 256, 3) uint8 face crops resized from the crop boxes."""
    _check_avatar(avatar)
    out = np.empty((avatar.num_frames, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(avatar.crop_boxes.astype(np.int64)):
        crop = avatar.frames[i, y0:y1, x0:x1]
        interp = cv2.INTER_AREA if crop.shape[0] > CROP_SIZE else cv2.INTER_LINEAR
        out[i] = cv2.resize(crop, (CROP_SIZE, CROP_SIZE), interpolation=interp)
    return out


@torch.inference_mode()
def encode_avatar(
    models: MuseTalkModels, avatar: PreparedAvatar, *, batch_size: int = 16
) -> AvatarLatents:
    """VAE-encode every crop of ``avatar`` on the models' device and dtype."""
    device, dtype = models.device, models.dtype
    crops = torch.from_numpy(crop_faces(avatar)).permute(0, 3, 1, 2)
    unet_ref: list[torch.Tensor] = []
    crops01: list[torch.Tensor] = []
    for start in range(0, len(crops), batch_size):
        x = crops[start : start + batch_size].to(device=device, dtype=torch.float32) / 255.0
        masked = x.clone()
        masked[:, :, CROP_SIZE // 2 :, :] = 0.0
        both = torch.cat([masked, x]) * 2.0 - 1.0
        moments = models.vae.encode(both.to(dtype)).latent_dist.mean * LATENT_SCALE
        half = x.shape[0]
        unet_ref.append(torch.cat([moments[:half], moments[half:]], dim=1))
        crops01.append(x.to(dtype))
    masks = torch.from_numpy(np.ascontiguousarray(avatar.masks, dtype=np.float32))
    support: np.ndarray = np.any(avatar.masks > _MASK_EPS, axis=0)
    rows, cols = np.flatnonzero(support.any(axis=1)), np.flatnonzero(support.any(axis=0))
    box = (int(rows[0]), int(cols[0]), int(cols[-1]) + 1) if len(rows) else (0, 0, CROP_SIZE)
    return AvatarLatents(
        name=avatar.name,
        unet_ref=torch.cat(unet_ref).contiguous(),
        crops=torch.cat(crops01),
        masks=masks[:, None].to(device=device, dtype=dtype),
        boxes=torch.from_numpy(avatar.crop_boxes.astype(np.float32)),
        frames=torch.from_numpy(np.ascontiguousarray(avatar.frames)).to(device),
        mask_box=box,
    )
