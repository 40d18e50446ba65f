"""Training: engine set-up, loop, checkpoints, schedules. The entry point each rank runs is ``python -m
affectgpt.train`` (``deepspeed --module affectgpt.train``, ``torchrun -m affectgpt.train``); DeepSpeed JSON
templates ship inside the package (``affectgpt/train/deepspeed/``)."""
