"""TFX module files (thin: they call road_tf)."""
