"""The weights store: where model files are looked for (the search path), fetching the public
pretrained files into it, loading the one to run, and `weights verify`."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import EX_CONFIG, UserError
from .cfg import load_spec
from .integrity import refuse_nonfinite
from .network import Model
from .weight_formats import read_model_file

SERVICE_WEIGHTS_DIR = Path("/var/lib/robot-detector/weights")  # the systemd unit's StateDirectory


def user_weights_dir() -> Path | None:
    """$XDG_DATA_HOME/robot-detector/weights (~/.local/share/... by default); None without a home."""
    data_home = os.environ.get("XDG_DATA_HOME", "")
    if not os.path.isabs(data_home):  # the XDG spec says to ignore a relative value
        try:
            data_home = Path.home() / ".local" / "share"
        except (RuntimeError, KeyError):  # no $HOME and no passwd entry
            return None
    return Path(data_home) / "robot-detector" / "weights"


def weights_search_dirs() -> list:
    """Where a model file is looked for when neither --weights nor the config names one, in order."""
    from_env = os.environ.get("ROBOT_DETECTOR_WEIGHTS")
    dirs = [Path(from_env).expanduser() if from_env else None, user_weights_dir(), SERVICE_WEIGHTS_DIR]
    return [d for d in dirs if d is not None]


def _search_path_text() -> str:
    return ", ".join(str(d) for d in weights_search_dirs())


@dataclass(frozen=True)
class Pretrained:
    """A public pretrained file. sha256 is None until someone with network access pins it."""
    cfg: str
    filename: str
    url: str
    size: int
    sha256: str | None


PRETRAINED = (
    Pretrained("yolov1-tiny", "tiny-yolov1.weights",
               "https://pjreddie.com/media/files/yolov1/tiny-yolov1.weights", 108_399_816, None),
    Pretrained("yolo-tiny", "yolo-tiny.weights",
               "https://pjreddie.com/media/files/yolo-tiny.weights", 180_357_512, None),
)


def how_to_get_weights() -> str:
    return ("Get pretrained weights with `robot-detector weights fetch` (needs internet; it saves into the "
            "first writable folder of the search path), or copy a Darknet Tiny-YOLO v1 .weights file into one "
            f"of {_search_path_text()}, or pass --weights PATH (or `weights` in the config). "
            "To see the whole pipeline work without weights, run `robot-detector run --demo`.")


def default_weights_path() -> Path:
    """The model file in the first folder of the search path that holds one, or an EX_CONFIG error
    that says where it looked and how to get one."""
    for folder in weights_search_dirs():
        candidates = sorted(p for p in folder.glob("*") if p.suffix in (".weights", ".npz")) if folder.is_dir() else []
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            names = ", ".join(p.name for p in candidates)
            raise UserError(f"Several model files in {folder}/ ({names}): choose one with --weights PATH.", EX_CONFIG)
    raise UserError(f"No pretrained weights found (looked in {_search_path_text()}).\n{how_to_get_weights()}", EX_CONFIG)


def default_fetch_dir() -> Path:
    """The first folder of the search path that can be written (or created) by this user."""
    for folder in weights_search_dirs():
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        if existing.is_dir() and os.access(existing, os.W_OK | os.X_OK):
            return folder
    raise UserError(f"None of the weights folders can be written by this user ({_search_path_text()}): "
                    "choose one with --dest DIR (or run as the user the folder belongs to).", EX_CONFIG)


def load_model(weights_path=None, cfg_path=None) -> Model:
    """Load parameters from a .weights or .npz file; the cfg is chosen by size when not given. A file
    with a NaN or infinite parameter is refused."""
    path = Path(weights_path) if weights_path else default_weights_path()
    if not path.is_file():
        raise UserError(f"Weights file {path} does not exist.\n{how_to_get_weights()}", EX_CONFIG)
    return refuse_nonfinite(read_model_file(path, load_spec(cfg_path) if cfg_path else None))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(path, cfg_path=None) -> dict:
    """What a weights file is and whether it loads. Raises UserError when it does not."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"Weights file {path} does not exist.\n{how_to_get_weights()}")
    model = load_model(path, cfg_path)
    digest = sha256_of(path)
    pinned = [p for p in PRETRAINED if p.sha256 == digest]
    return {"path": str(path), "model": model.name, "bytes": path.stat().st_size, "sha256": digest,
            "parameters": model.spec.parameter_count, "format": model.source.split(" (", 1)[-1].rstrip(")"),
            "pretrained": pinned[0].filename if pinned else None, "loads": True}


def fetch(dest=None, models=("yolov1-tiny",), mirror: str | None = None, timeout_s: float = 30.0) -> list:
    """Download public pretrained files into `dest` (default: the first writable folder of the
    search path), checking size (and sha256 where pinned).
    `mirror`: a base URL holding the same file names (a local mirror for offline sites)."""
    import urllib.error
    import urllib.request
    dest = Path(dest) if dest else default_fetch_dir()
    dest.mkdir(parents=True, exist_ok=True)
    fetched = []
    for item in (p for p in PRETRAINED if p.cfg in models):
        target, partial = dest / item.filename, dest / (item.filename + ".part")
        url = f"{mirror.rstrip('/')}/{item.filename}" if mirror else item.url
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response, open(partial, "wb") as out:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
        except (urllib.error.URLError, OSError) as error:
            partial.unlink(missing_ok=True)
            reason = getattr(error, "reason", error)
            raise UserError(f"Could not download {url}: {reason}. This machine seems to be offline or "
                            f"the server is unreachable. Download the file on a machine with internet access "
                            f"and copy it to {target} (expected size {item.size:,} bytes).") from None
        size = partial.stat().st_size
        digest = sha256_of(partial)
        if size != item.size or (item.sha256 and digest != item.sha256):
            partial.unlink()
            raise UserError(f"Downloaded {url} is {size:,} bytes with sha256 {digest}; expected "
                            f"{item.size:,} bytes{' and sha256 ' + item.sha256 if item.sha256 else ''}. "
                            "Nothing was saved; try again later.")
        partial.replace(target)
        fetched.append({"path": str(target), "bytes": size, "sha256": digest, "sha256_pinned": bool(item.sha256)})
    return fetched
