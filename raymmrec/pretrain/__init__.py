"""Stage 2: encoder pre-training / fine-tuning on image–text pairs (Ray Data pairs, Ray Train + DeepSpeed workers)."""
