"""mmsegmentation's own evaluation, run on the toolkit's models: its test pipeline (mmcv's
``LoadImageFromFile``, ``Resize``, mmseg's ``LoadAnnotations``, ``PackSegInputs``), ``SegDataPreProcessor``,
``EncoderDecoder``'s whole or sliding-window inference and ``postprocess_result``, and ``IoUMetric``'s
per-image areas. The model is the toolkit's, wrapped as an mmseg backbone whose output is its logits, and a
decode head that hands them on, so every step around it is mmsegmentation's code.

mmsegmentation 1.2.2 imports ``mmcv.ops`` (compiled operators, absent from the ``mmcv-lite`` wheel) in modules
of no use here: a stand-in module whose every member raises when called takes its place.
"""

from __future__ import annotations

import sys
import types


class _MissingOps(types.ModuleType):
    """``mmcv.ops`` without its compiled operators: any member is a function that raises."""

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)

        def missing(*args, **kwargs):
            raise RuntimeError(f"mmcv.ops.{name} is not in mmcv-lite; nothing on mmsegmentation's evaluation "
                               "path calls it")

        return missing


def _import_mmseg():
    if "mmcv.ops" not in sys.modules:
        sys.modules["mmcv.ops"] = _MissingOps("mmcv.ops")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mmcv-lite's "MultiScaleDeformableAttention" notice
        import mmseg.models  # noqa: F401  (registers the segmentors and heads)
        from mmengine.registry import init_default_scope
        from mmseg.models.decode_heads.decode_head import BaseDecodeHead
        from mmseg.registry import MODELS

    init_default_scope("mmseg")

    @MODELS.register_module(name="ToolkitLogits", force=True)
    class ToolkitLogits(__import__("torch").nn.Module):
        """The toolkit's model as an mmseg backbone: normalised pixels in, its raw logits out."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, pixels):
            return self.model(pixel_values=pixels).logits

    @MODELS.register_module(name="HandOnHead", force=True)
    class HandOnHead(BaseDecodeHead):
        """A decode head that hands the backbone's logits on: mmseg's ``predict_by_feat`` resizes them."""

        def forward(self, inputs):
            return inputs

    return MODELS


def mmseg_areas(model, samples: list[dict], scale: tuple[int, int], mode: str = "whole", crop: int | None = None,
                stride: int | None = None, size_divisor: int | None = None, num_classes: int = 21,
                mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> dict[str, dict[str, list]]:
    """Per image (by ``id``) mmsegmentation's ``IoUMetric`` areas (intersection, prediction, label; per class)
    for `samples` ({id, img_path, seg_map_path}) under its test pipeline ``Resize(scale, keep_ratio=True)``,
    whole or slide inference, and (`size_divisor`) test-time padding after normalisation."""
    import torch
    from mmengine.config import ConfigDict
    from mmengine.dataset import Compose, pseudo_collate
    from mmseg.evaluation import IoUMetric

    models = _import_mmseg()
    test_cfg = dict(mode=mode) if mode == "whole" else dict(mode="slide", crop_size=(crop, crop),
                                                             stride=(stride, stride))
    preprocessor = dict(type="SegDataPreProcessor", mean=[255.0 * value for value in mean],
                        std=[255.0 * value for value in std], bgr_to_rgb=True, pad_val=0, seg_pad_val=255,
                        test_cfg=dict(size_divisor=size_divisor) if size_divisor else None)
    segmentor = models.build(ConfigDict(
        type="EncoderDecoder", data_preprocessor=preprocessor, backbone=dict(type="ToolkitLogits", model=model),
        decode_head=dict(type="HandOnHead", in_channels=num_classes, channels=num_classes, num_classes=num_classes,
                         align_corners=False),
        test_cfg=test_cfg)).eval()
    # Pillow decodes the JPEG, as the toolkit's datasets read it (OpenCV's decoder may differ by a grey level).
    pipeline = Compose([dict(type="LoadImageFromFile", imdecode_backend="pillow"),
                        dict(type="Resize", scale=scale, keep_ratio=True),
                        dict(type="LoadAnnotations"), dict(type="PackSegInputs")])
    metric = IoUMetric(ignore_index=255)
    metric.dataset_meta = dict(classes=tuple(f"c{index}" for index in range(num_classes)))
    areas = {}
    for sample in samples:
        batch = pseudo_collate([pipeline(dict(img_path=sample["img_path"], seg_map_path=sample["seg_map_path"],
                                              reduce_zero_label=False, seg_fields=[]))])
        with torch.no_grad():
            outputs = segmentor.test_step(batch)
        metric.results.clear()
        metric.process(batch, [output.to_dict() for output in outputs])
        intersection, _, predicted, annotated = (part.numpy().astype("int64").tolist() for part in metric.results[0])
        areas[sample["id"]] = {"intersection": intersection, "predicted_area": predicted, "label_area": annotated}
    return areas
