"""Stage 4 search: Ray Tune + ASHA over models × search spaces, through the one backbone trainer, into MLflow."""
