"""Blending generated faces into the avatar's frames on the device.

The 256x256 face and its feathered mask are resampled into each frame's crop box by one
``grid_sample`` over the union of the batch's boxes and blended with the source pixels, all
on the device. Only that union is converted to floating point: the rest of each frame is a
uint8 copy of the source. A frame resized to another output size is converted whole.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["blend_faces", "to_device"]


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device`` without waiting for the device: a host tensor bound for a GPU
    goes through pinned memory, asynchronously. (A copy from pageable memory makes the
    host wait until the GPU has finished all the work queued before it: the render thread
    would stall behind its own batch instead of queueing the next.)"""
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def _union_box(boxes: torch.Tensor, w: int, h: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) integer pixels covering every box, clipped to the frame."""
    lo = boxes[:, :2].amin(dim=0).floor()
    hi = boxes[:, 2:].amax(dim=0).ceil()
    x0, y0, x1, y1 = (int(v) for v in torch.cat([lo, hi]).tolist())
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def _blend_region(
    region: torch.Tensor,
    faces: torch.Tensor,
    masks: torch.Tensor,
    bx: torch.Tensor,
    origin: tuple[int, int],
) -> torch.Tensor:
    """``region`` (B, 3, rh, rw) in [0, 1] with its top-left pixel at ``origin`` (x, y):
    the faces warped into their boxes, blended by the warped masks."""
    dtype, device = region.dtype, region.device
    rh, rw = region.shape[2:]
    xs = torch.arange(rw, device=device, dtype=torch.float32) + (origin[0] + 0.5)
    ys = torch.arange(rh, device=device, dtype=torch.float32) + (origin[1] + 0.5)
    gx = (xs[None, :] - bx[:, 0:1]) / (bx[:, 2:3] - bx[:, 0:1]) * 2.0 - 1.0  # (B, rw)
    gy = (ys[None, :] - bx[:, 1:2]) / (bx[:, 3:4] - bx[:, 1:2]) * 2.0 - 1.0  # (B, rh)
    grid = torch.stack(
        [gx[:, None, :].expand(-1, rh, -1), gy[:, :, None].expand(-1, -1, rw)], dim=-1
    ).to(dtype)
    src = torch.cat([faces.to(dtype), masks.to(dtype)], dim=1)
    warped = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    face, alpha = warped[:, :3], warped[:, 3:4]
    return region + alpha * (face - region)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x * 255.0).round_().clamp_(0.0, 255.0).to(torch.uint8)


def blend_faces(
    frames: torch.Tensor,
    faces: torch.Tensor,
    masks: torch.Tensor,
    boxes: torch.Tensor,
    out_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Blend ``faces`` into ``frames`` and return (B, h, w, 3) uint8 on the same device.

    frames: (B, H, W, 3) uint8; faces: (B, 3, S, S) in [0, 1]; masks: (B, 1, S, S) in [0, 1];
    boxes: (B, 4) x0, y0, x1, y1 in frame pixels, best on the CPU (boxes on the device
    cost a synchronization to find their union); out_size: (width, height) or None to keep.
    ``frames`` is not modified.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError("frames must be (B, H, W, 3) uint8")
    b, h, w, _ = frames.shape
    if faces.shape[0] != b or masks.shape[0] != b or boxes.shape != (b, 4):
        raise ValueError("faces, masks and boxes must have one entry per frame")
    dtype = faces.dtype if faces.device.type == "cuda" else torch.float32
    bx = boxes.to(torch.float32)
    rx0, ry0, rx1, ry1 = _union_box(bx, w, h)
    bx = to_device(bx, frames.device)
    resize = out_size is not None and out_size != (w, h)
    if resize:  # the whole frame is resampled: blend in floating point, quantize once
        base = frames.permute(0, 3, 1, 2).to(dtype) / 255.0
        if rx1 > rx0 and ry1 > ry0:
            region = base[:, :, ry0:ry1, rx0:rx1]
            base[:, :, ry0:ry1, rx0:rx1] = _blend_region(region, faces, masks, bx, (rx0, ry0))
        assert out_size is not None
        ow, oh = out_size
        base = F.interpolate(base, size=(oh, ow), mode="bilinear", antialias=True)
        return _to_uint8(base).permute(0, 2, 3, 1).contiguous()
    out = frames.clone()
    if rx1 > rx0 and ry1 > ry0:
        region = out[:, ry0:ry1, rx0:rx1].permute(0, 3, 1, 2).to(dtype) / 255.0
        blended = _blend_region(region, faces, masks, bx, (rx0, ry0))
        out[:, ry0:ry1, rx0:rx1] = _to_uint8(blended).permute(0, 2, 3, 1)
    return out
