"""Class names of a model: the 20 VOC names by default, or a names file (one a line, `--names`)
for models trained on other classes. Their count must match the cfg's `classes`."""
from __future__ import annotations

from pathlib import Path

from ..errors import EX_CONFIG, UserError
from .decode import VOC_CLASSES


def read_names(path) -> tuple:
    """Class names, one a line (blank lines ignored); a clear error when missing, empty or repeated."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: class names file not found (expected one class name a line)", EX_CONFIG) from None
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read the class names file ({getattr(error, 'strerror', None) or error})",
                        EX_CONFIG) from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise UserError(f"{path}: the class names file is empty (expected one class name a line)", EX_CONFIG)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise UserError(f"{path}: class name {duplicates[0]!r} appears more than once", EX_CONFIG)
    return names


def class_names_for(spec, names_path=None) -> tuple:
    """The names for `spec`'s classes: from `names_path`, else the VOC names (20-class models)."""
    classes = spec.detection.classes
    if names_path is None:
        if classes != len(VOC_CLASSES):
            raise UserError(f"the cfg ({spec.name}) has classes={classes}, so the default 20 VOC class names do "
                            "not fit: pass --names FILE with one class name a line", EX_CONFIG)
        return VOC_CLASSES
    names = read_names(names_path)
    if len(names) != classes:
        raise UserError(f"{names_path} lists {len(names)} class names, but the cfg ({spec.name}) has "
                        f"classes={classes}: give one name per class, in class-id order", EX_CONFIG)
    return names
