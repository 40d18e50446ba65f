"""Training entry point as a script path, for launchers and job scripts that take one:

  deepspeed --num_gpus 2 launcher/train.py --config configs/stage1.yaml [key=value ...]
  torchrun --nproc_per_node 2 launcher/train.py --config configs/stage1.yaml [key=value ...]

The same as ``deepspeed --module affectgpt.train ...`` (an installed package needs no checkout); see
``affectgpt/train/__main__.py`` and launcher/README.md.
"""

import sys

from affectgpt.train.__main__ import main

if __name__ == "__main__":
    sys.exit(main())
