"""Training a run: the trainer (curriculum, accumulation, checkpoints) and the training
samples' candidate lists."""
