"""A trained run's model as ONNX, checked against PyTorch on the run's own validation images.

`export_run(run_dir)` exports the saved model with torch's dynamo exporter (`torch.onnx.export(...,
dynamo=True)`), the batch, height and width dynamic: the graph takes a normalised image of any size
(1 to 4096 px a side), pads it inside the graph as the run's image processor pads (bottom and right,
to multiples of 32, with the processor's fill), and returns the logits resized bilinearly to the
padded size and cropped back to the input's: ``logits.argmax(1)`` is the class map, as
``post_process_semantic_segmentation`` gives it. It then runs the ONNX file with onnxruntime and the
PyTorch model on the first validation images of the run's data, normalised by the run's own image
processor and not padded, and records
the largest logit difference and the share of logit positions whose argmax agrees in
``export.json``, which the card shows (`hf_segcompare.report.card`). Below `MIN_ARGMAX_AGREEMENT`
the export is refused: the file is removed and the card not changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.transforms import padded_side
from ..engine.checkpoints import unreadable_weights
from ..errors import SegCompareError, UsageError
from ..evaluation.inference import load_image_processor, register_auto_classes
from ..report.card import EXPORT_FILE, write_model_card
from ..report.results import RESULTS_FILE, RunResults

ONNX_FILE = "model.onnx"
MIN_ARGMAX_AGREEMENT = 0.999
SIZE_STEP = 32  # every model here takes heights and widths that are multiples of 32: the graph pads to them
MAX_SIDE = 4096


class ExportMismatch(SegCompareError):
    """The exported model does not predict what the PyTorch model predicts."""


class LogitsAtInputSize(torch.nn.Module):
    """`model` with one input (normalised ``pixel_values`` of any size) and one output (its logits at that
    size), as the ONNX graph has them: padded bottom/right to multiples of `multiple` with `fill` (one value
    per channel; at least `minimum` a side) before the model, the logits resized to the padded size and the padding
    cropped off after."""

    def __init__(self, model, fill, multiple: int = SIZE_STEP, minimum: int = 1):
        super().__init__()
        self.model = model
        self.multiple = multiple
        self.minimum = minimum  # the smallest side the model runs on (the processor's min_size)
        self.register_buffer("fill", torch.as_tensor(fill, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, pixel_values):
        height, width = pixel_values.shape[-2:]
        padding = (0, padded_side(width, self.multiple, self.minimum) - width,
                   0, padded_side(height, self.multiple, self.minimum) - height)
        # The fill placed by a mask, not added after padding with 0: x - f + f is not always x in float.
        inside = torch.nn.functional.pad(torch.ones_like(pixel_values[:, :1]), padding) > 0
        padded = torch.where(inside, torch.nn.functional.pad(pixel_values, padding), self.fill.to(pixel_values.dtype))
        logits = self.model(pixel_values=padded).logits
        logits = torch.nn.functional.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)
        return logits[..., :height, :width]


def _require_export_packages() -> None:
    import importlib.util

    missing = [name for name in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise UsageError(f"--format onnx needs {', '.join(missing)}: pip install 'hf_segcompare[export]'.")


def _finished_run(run_dir: Path) -> RunResults:
    record = run_dir / RESULTS_FILE
    if not record.is_file():
        raise UsageError(f"{run_dir} has no {RESULTS_FILE}: pass the output folder of a finished training run.")
    results = RunResults.read(record)
    if results.status != "complete":
        raise UsageError(f"{record} records a {results.status} run: there is no trained model to export.")
    if not (run_dir / "model.safetensors").is_file():
        raise UsageError(f"{run_dir} has no model.safetensors: the run's model was not saved there.")
    damage = unreadable_weights(run_dir)
    if damage:
        raise UsageError(f"{run_dir}: the saved model cannot be read ({damage}); it was damaged after the run "
                         "wrote it. Restore the folder from a copy, or train it again (--overwrite_output_dir).")
    return results


def _axes(value) -> list[str | int]:
    """An ONNX graph input's or output's axes: the symbol of each dynamic one, the size of each fixed one."""
    return [axis.dim_param or axis.dim_value for axis in value.type.tensor_type.shape.dim]


def _name_input_axes(onnx_path: Path, names: tuple[str | None, ...]) -> None:
    """Rename the exporter's symbols for the input's dynamic axes (``s0``...) to `names`, wherever the graph
    uses them (the output's axes share the height's and width's symbols)."""
    import onnx

    graph = onnx.load(str(onnx_path))
    renamed = {axis.dim_param: name for axis, name in zip(graph.graph.input[0].type.tensor_type.shape.dim, names)
               if name and axis.dim_param}
    for value in [*graph.graph.input, *graph.graph.output, *graph.graph.value_info]:
        for axis in value.type.tensor_type.shape.dim:
            if axis.dim_param in renamed:
                axis.dim_param = renamed[axis.dim_param]
    onnx.save(graph, str(onnx_path))


def _validation_images(run_dir: Path, count: int) -> list:
    """The first `count` validation images of the run's data, read as the run read them."""
    from ..config.arguments import parse_args
    from .loading import load_data

    run_args = run_dir / "run_args.json"
    if not run_args.is_file():
        raise UsageError(f"{run_dir} has no run_args.json: the validation images are the run's own, read through "
                         "the arguments it ran with.")
    _, data_args, training_args = parse_args([str(run_args), "--output_dir", str(run_dir)])
    validation = load_data(data_args, training_args)["validation"]
    return [validation[index]["image"] for index in range(min(count, len(validation)))]


def export_run(run_dir: str | Path, images: int = 8, opset: int | None = None) -> dict[str, Any]:
    """Export `run_dir`'s model to ``model.onnx`` there and check it on `images` validation images;
    write and return the ``export.json`` record, and re-render the card with it.

    Raises:
        UsageError: not a finished training run's folder, or the export packages are missing.
        ExportMismatch: the exported model's argmax agrees with PyTorch's on less than 99.9 % of
            the positions (the file is removed, the card left as it was).
    """
    from transformers import AutoModelForSemanticSegmentation

    run_dir = Path(run_dir)
    results = _finished_run(run_dir)
    _require_export_packages()
    import onnx
    import onnxruntime

    register_auto_classes()
    model = AutoModelForSemanticSegmentation.from_pretrained(str(run_dir), use_safetensors=True).eval()
    processor = load_image_processor(str(run_dir), model)
    pictures = _validation_images(run_dir, images)
    if not pictures:
        raise UsageError(f"{run_dir}: the run's validation split is empty; there is nothing to check the export on.")
    wrapped = LogitsAtInputSize(model, processor.padding_fill(), processor.size_divisor,
                                getattr(processor, "min_size", 1)).eval()
    onnx_path = run_dir / ONNX_FILE
    _export_onnx(wrapped, onnx_path, opset)
    record = {
        "format": "onnx",
        "file": ONNX_FILE,
        "exporter": "torch.onnx.export(dynamo=True)",
        **_declared_graph(onnx.load(str(onnx_path), load_external_data=False)),
        **_agreement(wrapped, processor, onnxruntime.InferenceSession(str(onnx_path),
                                                                     providers=["CPUExecutionProvider"]), pictures),
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__},
    }
    largest = record["max_abs_logit_difference"]
    if record["argmax_agreement"] < MIN_ARGMAX_AGREEMENT:
        onnx_path.unlink(missing_ok=True)
        raise ExportMismatch(
            f"the ONNX model's argmax agrees with PyTorch's on {100 * record['argmax_agreement']:.3f} % of the "
            f"positions of {len(pictures)} validation images (largest logit difference {largest:.3g}), under the "
            f"{100 * MIN_ARGMAX_AGREEMENT:.1f} % required: nothing was kept.")
    (run_dir / EXPORT_FILE).write_text(json.dumps(record, indent=2) + "\n")
    write_model_card(results, run_dir, model_ref=(results.hub or {}).get("repo_id")
                     or results.args.get("training", {}).get("hub_model_id"))
    return record


def _export_onnx(wrapped: torch.nn.Module, onnx_path: Path, opset: int | None) -> None:
    """`wrapped` exported to `onnx_path` by torch's dynamo exporter, batch, height and width dynamic."""
    from torch.export import Dim

    # The example's sizes must not coincide: with one image torch.export specialises the batch to 1,
    # and with a square one it takes height and width for the same size (the graph then fails on any
    # other shape); nor be multiples of 32, or the padding would be specialised away. Its values do not
    # matter: no model here branches on them.
    example = torch.randn(2, 3, 3 * SIZE_STEP + 7, 5 * SIZE_STEP - 3, generator=torch.Generator().manual_seed(0))
    # Dim.DYNAMIC lets the exporter derive the padded sizes' constraints itself (named Dims with bounds fail
    # on them); the symbols it picks are renamed after the inputs' axes below.
    dynamic = {"pixel_values": {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
    with torch.no_grad():
        torch.onnx.export(wrapped, (example,), str(onnx_path), dynamo=True, dynamic_shapes=dynamic,
                          input_names=["pixel_values"], output_names=["logits"], opset_version=opset,
                          verbose=False)
    _name_input_axes(onnx_path, ("batch", None, "height", "width"))


def _declared_graph(graph) -> dict[str, Any]:
    """The export record's opset, inputs and outputs, as the file declares them: a name is a dynamic
    axis, a number a fixed one."""
    return {"opset": int(next(entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx"))),
            "inputs": {value.name: _axes(value) for value in graph.graph.input},
            "outputs": {value.name: _axes(value) for value in graph.graph.output}}


def _agreement(wrapped: torch.nn.Module, processor, session, pictures: list) -> dict[str, Any]:
    """How the exported graph (`session`) agrees with PyTorch (`wrapped`) on `pictures`: where it was
    checked, the largest logit difference, the share of positions whose argmax agrees."""
    import onnxruntime

    largest, agreeing, positions, shapes = 0.0, 0, 0, set()
    for picture in pictures:
        pixel_values = processor.normalized(picture)
        shapes.add(tuple(pixel_values.shape[-2:]))
        with torch.no_grad():
            expected = wrapped(pixel_values).numpy()
        exported = session.run(["logits"], {"pixel_values": pixel_values.numpy()})[0]
        largest = max(largest, float(np.abs(exported - expected).max()))
        agreeing += int((exported.argmax(1) == expected.argmax(1)).sum())
        positions += int(expected.argmax(1).size)
    return {"checked_on": {"images": len(pictures), "input_sizes": sorted(shapes), "logit_positions": positions,
                           "runtime": f"onnxruntime {onnxruntime.__version__} (CPUExecutionProvider)"},
            "max_abs_logit_difference": largest,
            "argmax_agreement": agreeing / positions}
