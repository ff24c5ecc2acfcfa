"""Darknet .weights files (modern and legacy layout, read and written) and the seed program's
Chainer .npz layout (read), with exact size checks and cfg selection by file size.

Darknet itself never checks sizes (a short file silently leaves random parameters), so every
size here is checked exactly and a mismatch names the model each size belongs to.
"""
from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .cfg import CFG_DIR, Connected, Convolutional, NetworkSpec, shipped_specs
from .network import MappedFile, Model, parametrised_layers


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


def is_seed_npz(path: Path) -> bool:
    """Whether the file is a zip archive (the seed's .npz) rather than Darknet .weights."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def read_model_file(path: Path, spec: NetworkSpec | None = None) -> Model:
    """A .npz or a Darknet .weights file; the cfg is chosen by size when not given."""
    return load_seed_npz(path, spec) if is_seed_npz(path) else load_darknet(path, spec)
