"""Stage 1: raw sources → the dataset dir (Parquet + stats.json)."""
