"""Training: stage-2 encoder pre-training (Ray Train + DeepSpeed) and its building blocks."""
