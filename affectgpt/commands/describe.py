"""Describe the emotional state of the person in one video file, and name the emotions.

The clip is decoded exactly as the pack job decodes training clips (frames, audio, JPEG and int16 storage),
with the frame count, size and audio length the model was built for. Prints the description, then a JSON
line {"labels": [...], "groups": [...]} extracted from it.

Example:
  affectgpt describe --model work/demo/stage2/export clip.mp4 --subtitle "I can't believe you did that."
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from affectgpt.eval.generate import GenerationConfig

HELP = "describe one video clip with a model and extract its emotion labels"
log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("clip", type=Path, help="video file (.mp4, .avi, .mkv, .mov)")
    p.add_argument("--model", type=Path, required=True, help="model directory (AffectGPT.save_pretrained)")
    p.add_argument("--subtitle", default="", help="what is said in the clip (goes into the prompt)")
    p.add_argument("--max-new-tokens", type=int, default=GenerationConfig.max_new_tokens,
                   help=f"description length limit (default: {GenerationConfig.max_new_tokens}, as affectgpt eval)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")


def run(args: argparse.Namespace) -> int:
    import torch

    from affectgpt.eval.extract import LexiconExtractor
    from affectgpt.media import MediaError
    from affectgpt.model import AffectGPT
    from affectgpt.packing import clip_sample

    model = AffectGPT.from_pretrained(args.model)
    try:
        sample = clip_sample(args.clip, model.config, args.subtitle)
    except MediaError as e:
        log.error("%s", e)
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    description = model.to(device).generate([sample], max_new_tokens=args.max_new_tokens)[0]
    print(description)
    print(json.dumps(LexiconExtractor().extract(description).to_json(), ensure_ascii=False))
    return 0
