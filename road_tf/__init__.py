"""road_tf: small reading-comprehension models distilled the ROaD way, served by TF Serving."""

import os
import warnings

# Command-line errors must be one line on stderr: keep TensorFlow's C++ start-up chatter and the
# Python-3.10 end-of-life notice of Google libraries off it (users may still set the variable).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\..*")
# TensorFlow 2.16 uses its oneDNN kernels by default only on CPUs with AVX-512 VNNI/BF16 or AMX.
# On an AVX2-only AMD EPYC (Zen 3) they made the MiniLM train step about 2x faster and fp32 matmul
# about 1.5x (benchmarks/README.md, train_throughput). Effective when road_tf is imported before
# TensorFlow, as `python -m road_tf.*` does; users may still set the variable to 0.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"
