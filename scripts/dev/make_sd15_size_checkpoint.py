"""Generate a random-weight checkpoint of SD1.5's full size (~2.1 GB, fp16) for the cold-start benchmark.

The tiny checkpoint (make_tiny_checkpoint.py) is 290 MB, so reading it from disk
costs nothing worth measuring; RunPod workers read a 2-7 GB checkpoint on their
first job. This one has SD1.5's real shapes: the full UNet (model_channels 320,
channel_mult 1,2,4,4, two res blocks a level, 860M parameters), CLIP-L and the
full KL VAE, so ComfyUI reads, loads and runs exactly what it would for the real
model, and the pictures are noise. Seeded and built with ComfyUI's own classes,
like the tiny one; nothing is downloaded.

    PYTHONPATH=.local/ComfyUI .local/venv/bin/python scripts/dev/make_sd15_size_checkpoint.py --models-dir DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from make_tiny_checkpoint import seeded_tensor, write  # beside this script

CHECKPOINT_NAME = "sd15-size-random-fp16.safetensors"

log = logging.getLogger("make_sd15_size_checkpoint")


def build_state_dict(seed: int) -> dict:
    import comfy.cli_args
    import torch

    comfy.cli_args.args.cpu = True
    import comfy.clip_model
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
    import comfy.ops
    import comfy.sd1_clip
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ops = comfy.ops.disable_weight_init  # uninitialized: the seeded values come next
    unet = openaimodel.UNetModel(
        image_size=32,
        in_channels=4,
        model_channels=320,
        out_channels=4,
        num_res_blocks=[2, 2, 2, 2],
        channel_mult=(1, 2, 4, 4),
        num_heads=8,
        use_spatial_transformer=True,
        transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
        transformer_depth_output=[0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        transformer_depth_middle=1,
        context_dim=768,
        use_linear_in_transformer=False,
        device="cpu",
        operations=ops,
    )
    clip_config = json.loads((Path(comfy.sd1_clip.__file__).parent / "sd1_clip_config.json").read_text())
    clip = comfy.clip_model.CLIPTextModel(clip_config, dtype=torch.float32, device="cpu", operations=ops)
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}  # fmt: skip
    vae = AutoencoderKL(ddconfig=ddconfig, embed_dim=4)

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for prefix, module in (
        ("model.diffusion_model.", unet),
        ("cond_stage_model.transformer.", clip),
        ("first_stage_model.", vae),
    ):
        for key, tensor in sorted(module.state_dict().items()):
            state[prefix + key] = seeded_tensor(prefix + key, tensor, generator).to(torch.float16).contiguous()
    return state


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True, help="a ComfyUI models folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[make_sd15_size_checkpoint] %(message)s")
    target = args.models_dir / "checkpoints" / CHECKPOINT_NAME
    if target.exists():
        log.info("exists: %s", target)
        return 0
    write(target, build_state_dict(args.seed), args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
