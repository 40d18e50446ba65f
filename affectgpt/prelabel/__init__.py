"""EMER-Coarse pre-labelling: describe each clip's visual and acoustic clues with multimodal models, merge the
clues and the subtitle into a reasoning description with an LLM, extract its emotion labels, optionally
translate it.

Pure Python and torch, no Ray: ``ray_jobs/prelabel.py`` runs these stages on Ray Data actor pools, and the
benchmark and unit tests run them in-process.

| module | what it holds |
|---|---|
| ``config.py`` | ``PrelabelConfig``: one section per stage (model dir, batch size, actors, CPUs/GPUs, prompt) |
| ``stages.py`` | the stages: ``decode``, ``Describer``, ``ChatStage`` (merge, translate), ``LabelStage`` |
| ``store.py`` | the resumable per-sample store and the output files (coarse.csv, failed.csv, stages/*.jsonl) |
"""
