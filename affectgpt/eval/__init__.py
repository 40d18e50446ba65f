"""Evaluation: emotion labels from free text (lexicon or LLM), EMER metrics, scoring."""
