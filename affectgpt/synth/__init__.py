"""The synthetic EMER corpus: drawn faces and voice-like audio whose cues encode emotions (see corpus_writer)."""
