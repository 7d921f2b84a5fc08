"""Loading MuseTalk v1.5 from the official weights folder, and writing that layout.

The layout is the public release's::

    <root>/musetalkV15/musetalk.json, unet.pth
    <root>/sd-vae/config.json, diffusion_pytorch_model.safetensors (or .bin)
    <root>/whisper/config.json, pytorch_model.bin (or model.safetensors), preprocessor_config.json

Every problem (a missing file, a config that does not describe MuseTalk, a tensor missing,
unexpected or of the wrong shape) is collected and raised together as ``WeightsError``
naming the files, never a silent fallback to random weights.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from inference.render.musetalk.config import MuseTalkArch
from inference.render.musetalk.model import MuseTalkModels, build_models

__all__ = ["EXPECTED_FILES", "WeightsError", "load_musetalk", "save_official_layout"]

EXPECTED_FILES: tuple[str, ...] = (
    "musetalkV15/musetalk.json",
    "musetalkV15/unet.pth",
    "sd-vae/config.json",
    "sd-vae/diffusion_pytorch_model.safetensors|sd-vae/diffusion_pytorch_model.bin",
    "whisper/config.json",
    "whisper/pytorch_model.bin|whisper/model.safetensors",
    "whisper/preprocessor_config.json",
)
_WHISPER_KEEP = ("d_model", "encoder_layers", "encoder_attention_heads", "encoder_ffn_dim")
_ENCODER_PREFIXES = ("model.encoder.", "encoder.")


class WeightsError(RuntimeError):
    """The weights folder is missing files or holds something other than MuseTalk v1.5."""

    def __init__(self, root: Path, problems: list[str]) -> None:
        self.root = root
        self.problems = problems
        listing = "\n  ".join(problems)
        expected = ", ".join(EXPECTED_FILES)
        super().__init__(f"MuseTalk weights at {root}:\n  {listing}\nexpected files: {expected}")


def _pick(root: Path, alternatives: str) -> Path | None:
    for rel in alternatives.split("|"):
        if (root / rel).is_file():
            return root / rel
    return None


def _read_json(path: Path, problems: list[str]) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{path}: unreadable JSON ({exc})")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a JSON object")
        return {}
    return data


def _read_tensors(path: Path, problems: list[str]) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        problems.append(f"{path}: cannot read tensors ({type(exc).__name__}: {exc})")
        return {}
    if (
        isinstance(data, Mapping)
        and "state_dict" in data
        and isinstance(data["state_dict"], Mapping)
    ):
        data = data["state_dict"]
    if not isinstance(data, Mapping):
        problems.append(f"{path}: expected a state dict, found {type(data).__name__}")
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}


def _config_from_json(found: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    """Keys of ``found`` that the architecture knows, JSON lists turned back into tuples."""
    out = dict(reference)
    for key in reference:
        if key in found:
            value = found[key]
            out[key] = tuple(value) if isinstance(value, list) else value
    return out


def _check_arch(
    path: Path, found: dict[str, Any], ref: dict[str, Any], problems: list[str]
) -> None:
    for key, want in ref.items():
        if key not in found:
            continue
        have = tuple(found[key]) if isinstance(found[key], list) else found[key]
        if have != want:
            problems.append(f"{path}: {key} is {have!r}, MuseTalk v1.5 needs {want!r}")


def _load_state(
    module: torch.nn.Module, state: Mapping[str, torch.Tensor], path: Path, problems: list[str]
) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("mismatched", wrong)):
        if keys:
            more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
            problems.append(f"{path}: {len(keys)} {label} tensors: {', '.join(keys[:5])}{more}")
    if not (missing or unexpected or wrong):
        module.load_state_dict(dict(state), strict=True)


def _encoder_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in _ENCODER_PREFIXES:
            if key.startswith(prefix):
                out[key[len(prefix) :]] = value
                break
    return out


def load_musetalk(root: str | Path, *, arch: MuseTalkArch | None = None) -> MuseTalkModels:
    """Build the networks described by ``arch`` (default: official v1.5) and load ``root``.

    Raises ``WeightsError`` listing every missing or mismatched file or tensor.
    """
    from inference.render.musetalk.config import official_arch

    arch = arch or official_arch()
    root = Path(root)
    if not root.is_dir():
        raise WeightsError(root, [f"{root}: not a directory"])
    problems: list[str] = []
    paths: dict[str, Path] = {}
    for rel in EXPECTED_FILES:
        found = _pick(root, rel)
        if found is None:
            problems.append(f"missing {root / rel.split('|')[0]}")
        else:
            paths[rel.split("|")[0]] = found
    if problems:
        raise WeightsError(root, problems)

    unet_json = _read_json(paths["musetalkV15/musetalk.json"], problems)
    vae_json = _read_json(paths["sd-vae/config.json"], problems)
    whisper_json = _read_json(paths["whisper/config.json"], problems)
    mel_json = _read_json(paths["whisper/preprocessor_config.json"], problems)
    unet_ref = {k: v for k, v in arch.unet.items() if k != "sample_size"}
    _check_arch(paths["musetalkV15/musetalk.json"], unet_json, unet_ref, problems)
    vae_ref = {k: v for k, v in arch.vae.items() if k != "sample_size"}
    _check_arch(paths["sd-vae/config.json"], vae_json, vae_ref, problems)
    whisper_ref = {k: arch.whisper[k] for k in _WHISPER_KEEP}
    _check_arch(paths["whisper/config.json"], whisper_json, whisper_ref, problems)
    _check_arch(
        paths["whisper/preprocessor_config.json"],
        mel_json,
        {"feature_size": arch.mel["feature_size"], "hop_length": arch.mel["hop_length"]},
        problems,
    )
    if problems:
        raise WeightsError(root, problems)

    models = build_models(arch, seed=None)
    pairs: tuple[tuple[Any, str, bool], ...] = (
        (models.unet, "musetalkV15/unet.pth", False),
        (models.vae, "sd-vae/diffusion_pytorch_model.safetensors", False),
        (models.whisper, "whisper/pytorch_model.bin", True),
    )
    for module, key, is_whisper in pairs:
        state = _read_tensors(paths[key], problems)
        if not state:
            if not any(str(paths[key]) in p for p in problems):
                problems.append(f"{paths[key]}: holds no tensors")
            continue
        if is_whisper:
            state = _encoder_state(state)
        _load_state(module, state, paths[key], problems)
    if problems:
        raise WeightsError(root, problems)
    return models


def save_official_layout(models: MuseTalkModels, root: str | Path) -> Path:
    """Write ``models`` in the official folder layout (used for tests and fixtures)."""
    root = Path(root)
    for sub in ("musetalkV15", "sd-vae", "whisper"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    arch = models.arch

    def jsonable(cfg: Mapping[str, Any]) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}

    unet_cfg = {"_class_name": "UNet2DConditionModel", **jsonable(arch.unet)}
    (root / "musetalkV15/musetalk.json").write_text(json.dumps(unet_cfg, indent=2))
    torch.save(
        {k: v.cpu() for k, v in models.unet.state_dict().items()}, root / "musetalkV15/unet.pth"
    )
    vae_cfg = {"_class_name": "AutoencoderKL", **jsonable(arch.vae)}
    (root / "sd-vae/config.json").write_text(json.dumps(vae_cfg, indent=2))
    vae_state = {k: v.detach().cpu().contiguous() for k, v in models.vae.state_dict().items()}
    save_file(vae_state, str(root / "sd-vae/diffusion_pytorch_model.safetensors"))
    (root / "whisper/config.json").write_text(json.dumps(jsonable(arch.whisper), indent=2))
    enc = {f"model.encoder.{k}": v.cpu() for k, v in models.whisper.state_dict().items()}
    torch.save(enc, root / "whisper/pytorch_model.bin")
    models.feature_extractor.to_json_file(str(root / "whisper/preprocessor_config.json"))
    return root
