"""Training loops: object tokenizers (and, later, event models)."""
