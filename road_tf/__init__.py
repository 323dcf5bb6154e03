"""road_tf: small reading-comprehension models distilled the ROaD way, served by TF Serving."""

import os
import warnings

# Command-line errors must be one line on stderr: keep TensorFlow's C++ start-up chatter and the
# Python-3.10 end-of-life notice of Google libraries off it (users may still set the variable).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")

__version__ = "0.1.0"
