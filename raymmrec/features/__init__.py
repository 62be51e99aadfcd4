"""Stage 3: item features by batch inference (CLIP, CLIPER multi-view, BEiT3 unified) and their quality report."""
from raymmrec.feature_sets import read_manifest
from raymmrec.features.extract import (CliperConfig, ExtractResult, FeaturesConfig, InferenceConfig,
                                       extract_features)
from raymmrec.features.quality import QualityConfig, feature_quality, quality_report

__all__ = ["CliperConfig", "ExtractResult", "FeaturesConfig", "InferenceConfig", "QualityConfig", "extract_features",
           "feature_quality", "quality_report", "read_manifest"]
