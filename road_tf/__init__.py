"""road_tf: small reading-comprehension models distilled the ROaD way, served by TF Serving."""

__version__ = "0.1.0"
