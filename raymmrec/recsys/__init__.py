"""Stage 4: interaction data, backbones, one trainer and full-ranking evaluation."""
