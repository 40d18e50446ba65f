"""WebDataset shards of decoded clips, the format and nothing else (no Ray, no model code, no ``affectgpt``):
``schema`` (sample format), ``writer`` (atomic, reproducible tar), ``index`` (index.json), ``verify``,
``storage`` (local paths and fsspec URLs) and ``loader`` (the stateful training loader; imports torch, so import
it explicitly). Packing a corpus into shards is ``affectgpt.packing``."""
