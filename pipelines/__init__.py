"""The TFX pipeline: data -> validation -> training -> evaluation gate -> push."""
