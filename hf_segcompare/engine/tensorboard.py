"""What a run shows in TensorBoard beyond Trainer's scalars (``--report_to tensorboard``).

Trainer's `TensorBoardCallback` already writes every number an evaluation logs, the per-class IoU
(``eval/iou_<class>``) and boundary IoU among them. `PredictionGrid` adds, after every evaluation,
the same few validation images with their annotated and predicted masks in the palette, so a run
can be watched learning, image by image. It writes through Trainer's own writer, into the same
event files (``<output_dir>/runs/...``, or ``TENSORBOARD_LOGGING_DIR``).
"""

from __future__ import annotations

from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback

from ..evaluation.samples import sample_predictions_figure

GRID_TAG = "predictions/validation"
GRID_IMAGES = 4


class PredictionGrid(TrainerCallback):
    """After every evaluation, on the main process: the first `count` images of `validation` (raw
    ``image``/``label`` rows, always the same ones) as a figure of image | annotation | prediction,
    logged under `GRID_TAG` at the step."""

    def __init__(self, tensorboard: TensorBoardCallback, validation, count: int = GRID_IMAGES):
        self.tensorboard = tensorboard
        self.validation = validation
        self.count = count

    def on_evaluate(self, args, state, control, model=None, **kwargs):
        writer = self.tensorboard.tb_writer
        if not state.is_world_process_zero or writer is None or model is None:
            return
        figure = sample_predictions_figure(model, self.validation, self.count)
        if figure is not None:
            writer.add_figure(GRID_TAG, figure, state.global_step, close=True)
            writer.flush()


def add_prediction_grid(trainer, validation) -> bool:
    """Add a `PredictionGrid` to `trainer` when it reports to TensorBoard; return whether it did."""
    tensorboard = next((callback for callback in trainer.callback_handler.callbacks
                        if isinstance(callback, TensorBoardCallback)), None)
    if tensorboard is None or validation is None:
        return False
    trainer.add_callback(PredictionGrid(tensorboard, validation))
    return True
