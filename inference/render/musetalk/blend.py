"""Blending generated faces into the avatar's frames on the device.

The 256x256 face and its feathered mask are resampled into each frame's crop box by one
``grid_sample`` over the union of the batch's boxes, blended with the source pixels,
resized to the output size and converted to uint8, all on the device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["blend_faces"]


def blend_faces(
    frames: torch.Tensor,
    faces: torch.Tensor,
    masks: torch.Tensor,
    boxes: torch.Tensor,
    out_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Blend ``faces`` into ``frames`` and return (B, h, w, 3) uint8 on the same device.

    frames: (B, H, W, 3) uint8; faces: (B, 3, S, S) in [0, 1]; masks: (B, 1, S, S) in [0, 1];
    boxes: (B, 4) x0, y0, x1, y1 in frame pixels; out_size: (width, height) or None to keep.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError("frames must be (B, H, W, 3) uint8")
    b, h, w, _ = frames.shape
    if faces.shape[0] != b or masks.shape[0] != b or boxes.shape != (b, 4):
        raise ValueError("faces, masks and boxes must have one entry per frame")
    dtype = faces.dtype if faces.device.type == "cuda" else torch.float32
    base = frames.permute(0, 3, 1, 2).to(dtype) / 255.0
    bx = boxes.to(torch.float32)
    rx0 = max(int(bx[:, 0].min().floor().item()), 0)
    ry0 = max(int(bx[:, 1].min().floor().item()), 0)
    rx1 = min(int(bx[:, 2].max().ceil().item()), w)
    ry1 = min(int(bx[:, 3].max().ceil().item()), h)
    if rx1 > rx0 and ry1 > ry0:
        xs = torch.arange(rx0, rx1, device=frames.device, dtype=torch.float32) + 0.5
        ys = torch.arange(ry0, ry1, device=frames.device, dtype=torch.float32) + 0.5
        gx = (xs[None, :] - bx[:, 0:1]) / (bx[:, 2:3] - bx[:, 0:1]) * 2.0 - 1.0  # (B, rw)
        gy = (ys[None, :] - bx[:, 1:2]) / (bx[:, 3:4] - bx[:, 1:2]) * 2.0 - 1.0  # (B, rh)
        grid = torch.stack(
            [gx[:, None, :].expand(-1, len(ys), -1), gy[:, :, None].expand(-1, -1, len(xs))],
            dim=-1,
        ).to(dtype)
        src = torch.cat([faces.to(dtype), masks.to(dtype)], dim=1)
        warped = F.grid_sample(
            src, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        face, alpha = warped[:, :3], warped[:, 3:4]
        region = base[:, :, ry0:ry1, rx0:rx1]
        base[:, :, ry0:ry1, rx0:rx1] = region + alpha * (face - region)
    if out_size is not None and out_size != (w, h):
        ow, oh = out_size
        base = F.interpolate(base, size=(oh, ow), mode="bilinear", antialias=True)
    out = (base * 255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)
    return out.permute(0, 2, 3, 1).contiguous()
