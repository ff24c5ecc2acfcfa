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
from .network import Model, parametrised_layers

WEIGHTS_DIR = Path(os.environ.get("ROBOT_DETECTOR_WEIGHTS_DIR", Path(__file__).resolve().parents[2] / "weights"))


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

HOW_TO_GET_WEIGHTS = (
    "Get pretrained weights with `robot-detector weights fetch` (needs internet), or copy a Darknet "
    f"Tiny-YOLO v1 .weights file (see {WEIGHTS_DIR / 'README.md'}) into {WEIGHTS_DIR}/ or pass "
    "--weights PATH. To see the whole pipeline work without weights, run `robot-detector run --demo`."
)


def shipped_specs() -> dict:
    """The cfgs shipped in weights/, by model name."""
    return {path.stem: load_cfg(path) for path in sorted(WEIGHTS_DIR.glob("*.cfg"))}


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
    raise UserError(f"{path} is {size:,} bytes, which matches no shipped cfg in {WEIGHTS_DIR}.\n"
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
    hint = f" Its size is that of the '{belongs[0]}' model: pass --cfg {WEIGHTS_DIR / belongs[0]}.cfg." if belongs else ""
    raise UserError(f"{path} is {size:,} bytes but cfg '{spec.name}' needs exactly {expected:,} "
                    f"({header.size}-byte header + 4 x {spec.parameter_count:,} parameters): {problem}.{hint}\n"
                    f"{_known_sizes_text()}")


def load_darknet(path: Path, spec: NetworkSpec | None = None) -> Model:
    header = read_header(path)
    spec = spec or select_cfg_by_size(path, header)
    check_size(path, spec, header)
    values = np.fromfile(path, dtype="<f4", offset=header.size)
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
            params[index][name] = np.ascontiguousarray(array.reshape(shape), dtype=np.float32)
    kind = "legacy" if header.legacy else f"v{header.major}.{header.minor}.{header.revision}"
    return Model(spec, tuple(params), f"{path} (Darknet {kind} header)")


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
    """The one model file in weights/, or an EX_CONFIG error that says how to get one."""
    candidates = sorted(p for p in WEIGHTS_DIR.glob("*") if p.suffix in (".weights", ".npz"))
    if not candidates:
        raise UserError(f"No pretrained weights found in {WEIGHTS_DIR}/.\n{HOW_TO_GET_WEIGHTS}", EX_CONFIG)
    if len(candidates) > 1:
        names = ", ".join(p.name for p in candidates)
        raise UserError(f"Several model files in {WEIGHTS_DIR}/ ({names}): choose one with --weights PATH.", EX_CONFIG)
    return candidates[0]


def load_model(weights_path=None, cfg_path=None) -> Model:
    """Load parameters from a .weights or .npz file; the cfg is chosen by size when not given."""
    path = Path(weights_path) if weights_path else default_weights_path()
    if not path.is_file():
        raise UserError(f"Weights file {path} does not exist.\n{HOW_TO_GET_WEIGHTS}", EX_CONFIG)
    spec = load_cfg(cfg_path) if cfg_path else None
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    return load_seed_npz(path, spec) if is_zip else load_darknet(path, spec)


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
        raise UserError(f"Weights file {path} does not exist.\n{HOW_TO_GET_WEIGHTS}")
    model = load_model(path, cfg_path)
    digest = sha256_of(path)
    pinned = [p for p in PRETRAINED if p.sha256 == digest]
    return {"path": str(path), "model": model.name, "bytes": path.stat().st_size, "sha256": digest,
            "parameters": model.spec.parameter_count, "format": model.source.split(" (", 1)[-1].rstrip(")"),
            "pretrained": pinned[0].filename if pinned else None, "loads": True}


def fetch(dest, models=("yolov1-tiny",), mirror: str | None = None, timeout_s: float = 30.0) -> list:
    """Download public pretrained files into `dest`, checking size (and sha256 where pinned).
    `mirror`: a base URL holding the same file names (a local mirror for offline sites)."""
    import urllib.error
    import urllib.request
    dest = Path(dest)
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
