"""Reading trained parameters: Darknet .weights files (modern and legacy layout) and the seed
program's Chainer .npz layout, with exact size checks and cfg selection by file size.

Darknet itself never checks sizes (a short file silently leaves random parameters), so every
size here is checked exactly and a mismatch names the model each size belongs to.
"""
from __future__ import annotations

import hashlib
import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cfg import Connected, Convolutional, NetworkSpec, load_cfg
from ..errors import EX_CONFIG, UserError
from .integrity import refuse_nonfinite
from .network import MappedFile, Model, parametrised_layers

CFG_DIR = Path(__file__).resolve().parent / "cfgs"  # package data: the shipped cfgs
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


def shipped_specs() -> dict:
    """The cfgs shipped with the package, by model name."""
    return {path.stem: load_cfg(path) for path in sorted(CFG_DIR.glob("*.cfg"))}


# --- Darknet .weights ------------------------------------------------------------------------

@dataclass(frozen=True)
class DarknetHeader:
    major: int
    minor: int
    revision: int
    seen: int
    size: int      # bytes: 16 (int32 seen) or 20 (int64 seen)
    legacy: bool   # written before Dec 2015: first values are float hyper-parameters, matrices [in][out]


def read_header(path: Path) -> DarknetHeader:
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 16:
        raise UserError(f"{path} is {len(head)} bytes: too short to be a Darknet weights file (header alone is 16 bytes)")
    major, minor, revision = struct.unpack("<3i", head[:12])
    # Legacy files start with learning rate, momentum and decay as float32; read as int32 they
    # are huge, which is exactly how Darknet tells them apart.
    legacy = major > 1000 or minor > 1000
    wide_seen = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    if wide_seen:
        if len(head) < 20:
            raise UserError(f"{path} is {len(head)} bytes: too short for its own 20-byte header")
        seen = struct.unpack("<q", head[12:20])[0]
    else:
        seen = struct.unpack("<i", head[12:16])[0]
    return DarknetHeader(major, minor, revision, seen, 20 if wide_seen else 16, legacy)


def expected_size(spec: NetworkSpec, header_size: int) -> int:
    return header_size + 4 * spec.parameter_count


def _known_sizes_text() -> str:
    lines = [f"  {name}: {expected_size(spec, 16):,} bytes (or {expected_size(spec, 20):,} with a 20-byte header)"
             for name, spec in shipped_specs().items()]
    return "Known Tiny-YOLO v1 models:\n" + "\n".join(lines)


def select_cfg_by_size(path: Path, header: DarknetHeader) -> NetworkSpec:
    size = path.stat().st_size
    for spec in shipped_specs().values():
        if expected_size(spec, header.size) == size:
            return spec
    raise UserError(f"{path} is {size:,} bytes, which matches no shipped cfg.\n"
                    f"{_known_sizes_text()}\n"
                    "A smaller file is probably a truncated download: fetch it again. For another "
                    "network, pass its Darknet cfg with --cfg.")


def check_size(path: Path, spec: NetworkSpec, header: DarknetHeader) -> None:
    size = path.stat().st_size
    expected = expected_size(spec, header.size)
    if size == expected:
        return
    if size < expected:
        problem = f"it is truncated: {expected - size:,} bytes are missing"
    else:
        problem = f"it has {size - expected:,} bytes too many"
    belongs = [name for name, other in shipped_specs().items() if expected_size(other, header.size) == size]
    hint = f" Its size is that of the '{belongs[0]}' model: pass --cfg {CFG_DIR / belongs[0]}.cfg." if belongs else ""
    raise UserError(f"{path} is {size:,} bytes but cfg '{spec.name}' needs exactly {expected:,} "
                    f"({header.size}-byte header + 4 x {spec.parameter_count:,} parameters): {problem}.{hint}\n"
                    f"{_known_sizes_text()}")


def load_darknet(path: Path, spec: NetworkSpec | None = None) -> Model:
    header = read_header(path)
    spec = spec or select_cfg_by_size(path, header)
    check_size(path, spec, header)
    # Mapped, not read: the parameters stay in the page cache until an engine uses them, and
    # every array below is a view of the file (legacy matrices included: their transpose is a view).
    values = np.memmap(path, dtype="<f4", mode="r", offset=header.size)
    params = [{} for _ in spec.layers]
    offset = 0
    for index in parametrised_layers(spec):
        layer = spec.layers[index]
        for name, shape in spec.parameter_shapes(index):
            count = int(np.prod(shape))
            array = values[offset:offset + count]
            offset += count
            if name == "weights" and isinstance(layer, Connected) and header.legacy:
                array = array.reshape(layer.inputs, layer.outputs).T
            params[index][name] = array.reshape(shape)
    kind = "legacy" if header.legacy else f"v{header.major}.{header.minor}.{header.revision}"
    return Model(spec, tuple(params), f"{path} (Darknet {kind} header)", MappedFile(path.resolve(), values, header.size))


# --- the seed's Chainer .npz -----------------------------------------------------------------

SEED_CONV_LINKS = ("c1", "c3", "c5", "c7", "c9", "c11", "c13", "c14", "c15")
SEED_LINEAR_LINKS = ("l16", "l17", "l19")


def load_seed_npz(path: Path, spec: NetworkSpec | None = None) -> Model:
    spec = spec or shipped_specs().get("yolo-tiny")
    convs = [i for i, layer in enumerate(spec.layers) if isinstance(layer, Convolutional)]
    linears = [i for i, layer in enumerate(spec.layers) if isinstance(layer, Connected)]
    if len(convs) != len(SEED_CONV_LINKS) or len(linears) != len(SEED_LINEAR_LINKS) or any(
            spec.layers[i].batch_normalize for i in convs):
        raise UserError(f"{path}: the seed's .npz layout holds the 2015 yolo-tiny model (9 convolutions "
                        f"without batch norm, 3 connected layers), but cfg '{spec.name}' is a different network")
    try:
        archive = np.load(path, allow_pickle=False)
        stored = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        raise UserError(f"{path}: not a readable .npz archive ({error})") from None

    def array(link: str, param: str, shape: tuple) -> np.ndarray:
        # Chainer prefixes keys with the parent link's path when the model was wrapped (e.g. in a
        # Classifier), so accept any prefix ending in "<link>/<param>".
        keys = [key for key in stored if key == f"{link}/{param}" or key.endswith(f"/{link}/{param}")]
        if not keys:
            raise UserError(f"{path}: array '{link}/{param}' is missing; the seed layout needs "
                            f"{', '.join(SEED_CONV_LINKS + SEED_LINEAR_LINKS)}, each with W and b")
        value = stored[keys[0]]
        if value.shape != shape:
            raise UserError(f"{path}: array '{keys[0]}' has shape {value.shape}, expected {shape} for {spec.name}")
        return np.ascontiguousarray(value, dtype=np.float32)

    params = [{} for _ in spec.layers]
    for links, indices in ((SEED_CONV_LINKS, convs), (SEED_LINEAR_LINKS, linears)):
        for link, index in zip(links, indices):
            shapes = dict(spec.parameter_shapes(index))
            params[index] = {"weights": array(link, "W", shapes["weights"]),
                             "biases": array(link, "b", shapes["biases"])}
    return Model(spec, tuple(params), f"{path} (seed Chainer npz)")


# --- entry points ----------------------------------------------------------------------------

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


def load_spec(cfg) -> NetworkSpec:
    """`--cfg`: a cfg file's path, or the name of a shipped model (`yolov1-tiny`, `yolo-tiny`), so
    that commands work the same from a clone and from an installed package."""
    path = Path(cfg)
    if not path.exists() and (CFG_DIR / f"{cfg}.cfg").is_file():
        path = CFG_DIR / f"{cfg}.cfg"
    elif not path.exists():
        raise UserError(f"cfg {cfg} not found: expected a Darknet cfg file or a shipped model name "
                        f"({', '.join(sorted(shipped_specs()))})", EX_CONFIG)
    return load_cfg(path)


def load_model(weights_path=None, cfg_path=None) -> Model:
    """Load parameters from a .weights or .npz file; the cfg is chosen by size when not given. A file
    with a NaN or infinite parameter is refused."""
    path = Path(weights_path) if weights_path else default_weights_path()
    if not path.is_file():
        raise UserError(f"Weights file {path} does not exist.\n{how_to_get_weights()}", EX_CONFIG)
    spec = load_spec(cfg_path) if cfg_path else None
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    return refuse_nonfinite(load_seed_npz(path, spec) if is_zip else load_darknet(path, spec))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- `robot-detector weights verify|fetch` -----------------------------------------------------

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


def save_darknet(model: Model, path, seen: int) -> None:
    """Write `model` as Darknet does (header 0.2.0 with an int64 `seen`, then each layer in cfg
    order), atomically: readers see the old file or the whole new one, never a partial write."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(partial, "wb") as f:
            f.write(struct.pack("<3iq", 0, 2, 0, int(seen)))
            for index in parametrised_layers(model.spec):
                for name, shape in model.spec.parameter_shapes(index):
                    f.write(np.ascontiguousarray(model.params[index][name], dtype="<f4").reshape(shape).tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise UserError(f"cannot write weights file {path}: {error.strerror}") from None
