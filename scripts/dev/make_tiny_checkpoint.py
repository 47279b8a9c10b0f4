"""Generate a tiny random-weight checkpoint that ComfyUI loads as SD1.5.

It is noise, not a model: the images it makes are meaningless, but every node of
the standard txt2img workflow (CheckpointLoaderSimple -> CLIPTextEncode ->
KSampler -> VAEDecode -> SaveImage) runs for real on a CPU in well under a second.

Shape, chosen from ComfyUI's own detection rules (comfy/model_detection.py,
comfy/supported_models.py SD15):
- UNet: model_channels 320, context_dim 768, one level, one res block, one
  transformer block (so context_dim is detected), no middle block.
- CLIP-L: full size, since CheckpointLoaderSimple builds it from a fixed config.
- VAE: TAESD (keys taesd_encoder/taesd_decoder make comfy/sd.py pick it).

Beside it, for workflows that load a VAE or a LoRA of their own (the editor's
templates do): the checkpoint's TAESD halves as `models/vae_approx/taesd_encoder`
and `taesd_decoder` (VAELoader offers them as "taesd"), and `models/loras/tiny-lora`,
a rank-4 LoRA on the UNet's first attention layer (it changes the image).

Weights are seeded, so the same seed gives a byte-identical file. The tensors are
built with ComfyUI's own classes, so key names are exactly what it expects.
Run with the local venv's Python and ComfyUI on the import path
(`PYTHONPATH=.local/ComfyUI`, as scripts/dev/setup_local.sh does); nothing is downloaded.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from pathlib import Path
from typing import Any

CHECKPOINT_NAME = "tiny-random-sd15-noise.safetensors"
LORA_NAME = "tiny-lora.safetensors"
LORA_RANK = 4

log = logging.getLogger("make_tiny_checkpoint")


def build_state_dict(seed: int) -> dict:
    import json

    import comfy.cli_args
    import torch

    # Build on the CPU whatever the machine has; ComfyUI reads this at import time.
    comfy.cli_args.args.cpu = True
    import comfy.clip_model
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
    import comfy.ops
    import comfy.sd1_clip
    import comfy.taesd.taesd

    ops = comfy.ops.disable_weight_init
    unet = openaimodel.UNetModel(
        image_size=32,
        in_channels=4,
        model_channels=320,
        out_channels=4,
        num_res_blocks=[1],
        channel_mult=(1,),
        num_heads=8,
        use_spatial_transformer=True,
        transformer_depth=[1],
        transformer_depth_output=[1, 1],
        transformer_depth_middle=-2,
        context_dim=768,
        use_linear_in_transformer=False,
        device="cpu",
        operations=ops,
    )
    clip_config_path = Path(comfy.sd1_clip.__file__).parent / "sd1_clip_config.json"
    clip_config = json.loads(clip_config_path.read_text())
    clip = comfy.clip_model.CLIPTextModel(clip_config, dtype=torch.float32, device="cpu", operations=ops)
    vae = comfy.taesd.taesd.TAESD()

    state = {}
    for prefix, module in (
        ("model.diffusion_model.", unet),
        ("cond_stage_model.transformer.", clip),
        ("first_stage_model.", vae),
    ):
        for key, tensor in module.state_dict().items():
            state[prefix + key] = tensor

    generator = torch.Generator().manual_seed(seed)
    for key in sorted(state):
        state[key] = seeded_tensor(key, state[key], generator).to(torch.float16).contiguous()
    return state


def seeded_tensor(key: str, like: Any, generator: Any) -> Any:
    """Scaled noise for weights, ones for norms, zeros for biases: keeps activations finite."""
    import torch

    if key.endswith("position_ids"):
        return torch.arange(like.shape[-1]).expand(like.shape).clone()
    if key.endswith("vae_scale"):
        return torch.tensor(1.0)
    if key.endswith("vae_shift") or key.endswith(".bias"):
        return torch.zeros(like.shape)
    if like.dim() <= 1:  # norm weights
        return torch.ones(like.shape)
    fan_in = math.prod(like.shape[1:])
    return torch.randn(like.shape, generator=generator) / math.sqrt(fan_in)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-dir", type=Path, required=True, help="the pinned ComfyUI tree")
    parser.add_argument("--models-dir", type=Path, help="where the model folders are (default: the tree's models/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="regenerate even if the file exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[make_tiny_checkpoint] %(message)s")

    models = args.models_dir or args.comfyui_dir / "models"
    target = models / "checkpoints" / CHECKPOINT_NAME
    companions = [
        models / "vae_approx" / "taesd_encoder.safetensors",
        models / "vae_approx" / "taesd_decoder.safetensors",
    ]
    lora = models / "loras" / LORA_NAME
    if all(path.exists() for path in (target, *companions, lora)) and not args.force:
        log.info("exists: %s and its VAE and LoRA files", target)
        return 0
    import torch

    state = build_state_dict(args.seed)
    for half, path in zip(("encoder", "decoder"), companions, strict=True):
        prefix = f"first_stage_model.taesd_{half}."
        write(
            path, {key.removeprefix(prefix): value for key, value in state.items() if key.startswith(prefix)}, args.seed
        )
    generator = torch.Generator().manual_seed(args.seed + 1)
    base = "lora_unet_input_blocks_1_1_transformer_blocks_0_attn1_to_q"
    write(
        lora,
        {
            f"{base}.lora_down.weight": torch.randn(LORA_RANK, 320, generator=generator).half() * 0.5,
            f"{base}.lora_up.weight": torch.randn(320, LORA_RANK, generator=generator).half() * 0.5,
            f"{base}.alpha": torch.tensor(float(LORA_RANK)).half(),
        },
        args.seed,
    )
    write(target, state, args.seed)
    return 0


def write(target: Path, state: dict, seed: int) -> None:
    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial")
    save_file(state, str(partial), metadata={"note": "random weights, not a model", "seed": str(seed)})
    partial.replace(target)
    log.info("wrote %s (%d tensors, %.1f MB)", target, len(state), target.stat().st_size / 1e6)


if __name__ == "__main__":
    sys.exit(main())
