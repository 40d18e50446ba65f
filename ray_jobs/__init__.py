"""Ray jobs, run with `ray job submit --working-dir . -- python -m ray_jobs.<job>`: thin orchestration over
``affectgpt.media`` and ``shards``."""
