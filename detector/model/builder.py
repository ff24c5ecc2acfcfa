"""The one place that builds a predictor: weights (and cfg) -> model, class names, engine on its device
at its precision (with its int8 calibration), threshold and NMS. `run`, `detect`, `bench`, `evaluate`
and `collect` all come through here, so an option of the model cannot be honoured by one command and
forgotten by another."""
from __future__ import annotations

from dataclasses import dataclass, fields

from .classnames import class_names_for
from .decode import VOC_CLASSES
from .engines import create_engine
from .network import Model
from .predictor import Predictor
from .weights_store import load_model


@dataclass(frozen=True)
class PredictorSpec:
    weights: str | None = None      # None: the first model file on the weights search path
    cfg: str | None = None          # None: chosen by the weights file's size
    names: str | None = None        # class names file; None: the 20 VOC names
    engine: str | None = None       # None: the fastest CPU engine
    device: str = "cpu"             # cpu, gpu, gpu:N or auto
    precision: str = "fp32"         # int8: the quantized graph (onnxruntime)
    calibration: str | None = None  # photos calibrating the int8 graph; None: generated frames
    low_memory: bool = False        # onnxruntime fp32 without weight prepacking: smaller, slower
    threshold: float = 0.2
    nms: float = 0.5
    require_names: bool = True      # False: a model of other classes without `names` reports class ids

    @classmethod
    def of(cls, values, **changes) -> "PredictorSpec":
        """The spec from any object with some of these attributes (parsed arguments, the daemon's Config)."""
        taken = {f.name: getattr(values, f.name) for f in fields(cls) if getattr(values, f.name, None) is not None}
        return cls(**{**taken, **changes})


def load(spec: PredictorSpec) -> Model:
    return load_model(spec.weights, spec.cfg)


def build_predictor(spec: PredictorSpec, model: Model | None = None) -> Predictor:
    """The predictor `spec` describes; `model`: one already loaded (or generated) instead of spec.weights."""
    model = model or load(spec)
    if spec.names is None and not spec.require_names and model.spec.detection.classes != len(VOC_CLASSES):
        names = None  # decode names the classes by their ids
    else:
        names = class_names_for(model.spec, spec.names)
    engine = create_engine(model, spec.engine, spec.device, spec.precision, spec.calibration, spec.low_memory)
    return Predictor(engine, spec.threshold, spec.nms, names)
