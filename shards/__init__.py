"""WebDataset shards of decoded clips, without Ray or model code: ``schema`` (sample format), ``writer``
(atomic, reproducible tar), ``index`` (index.json), ``verify``, ``build`` (plan and pack a corpus; driven by
``ray_jobs.pack``) and ``loader`` (the stateful training loader; imports torch, so import it explicitly)."""
