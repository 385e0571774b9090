"""The registry is the single description of a model: a fifth model, registered from this file
alone, goes through the same end-to-end path as the four (train, evaluate, card, compare, reload)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSemanticSegmentation

from hf_segcompare.errors import PretrainedUnavailable, UsageError
from hf_segcompare.models import (
    IMAGENET,
    ModelEntry,
    SmpForSemanticSegmentation,
    SmpSegConfig,
    count_parameters,
    create_model,
    get_entry,
    list_models,
    register_model,
    unregister_model,
)
from hf_segcompare.models.smp import load_smp_encoder
from hf_segcompare.report.results import RunResults

from .conftest import run_seg_in_process

FPN = ModelEntry(
    "fpn-tiny", family="cnn", description="FPN with timm's test ResNet encoder (registered by a test)",
    config_class=SmpSegConfig, model_class=SmpForSemanticSegmentation,
    config_kwargs={"arch": "fpn", "encoder_name": "tu-test_resnet",
                   "arch_kwargs": {"decoder_pyramid_channels": 32, "decoder_segmentation_channels": 32}},
    load_pretrained=load_smp_encoder, normalization=IMAGENET, parent="unet",
)


@pytest.fixture
def fpn_tiny():
    register_model(FPN)
    yield FPN
    unregister_model(FPN.name)


def test_a_model_registered_from_a_test_file_trains_evaluates_and_gets_a_card(fpn_tiny, voc_tree, tmp_path, capsys):
    assert "fpn-tiny" in list_models(include_test_variants=True) and "fpn-tiny" not in list_models()
    output = tmp_path / "fpn"
    status, stderr, stdout = run_seg_in_process(
        ["--model", "fpn-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc", "--data_dir",
         str(voc_tree), "--output_dir", str(output), "--max_steps", "2", "--eval_strategy", "steps",
         "--eval_steps", "2", "--save_strategy", "no"], capsys)
    assert status == 0, stderr[-3000:]
    results = RunResults.read(output / "results.json")
    assert (results.model, results.family, results.architecture) == ("fpn-tiny", "cnn", FPN.description)
    assert results.parameters == count_parameters(create_model("fpn-tiny")) < 1_000_000
    assert results.mean_iou is not None and results.recipe["name"] == "demo"
    assert results.recipe["source"] == get_entry("unet").recipe("demo").source  # the parent's recipes
    card = (output / "README.md").read_text()
    assert "# fpn-tiny: FPN with timm's test ResNet encoder" in card and f"{results.mean_iou:.4f}" in card
    # The saved folder is an ordinary transformers model: the Auto classes rebuild the FPN.
    loaded = AutoModelForSemanticSegmentation.from_pretrained(output)
    assert type(loaded) is SmpForSemanticSegmentation and loaded.config.arch == "fpn"
    assert loaded.config.segcompare_model == "fpn-tiny"
    # And it compares with the four.
    from hf_segcompare.report.page import write_comparison

    other = tmp_path / "segformer"
    assert run_seg_in_process(["--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name",
                               "voc", "--data_dir", str(voc_tree), "--output_dir", str(other), "--max_steps", "2",
                               "--save_strategy", "no"], capsys)[0] == 0
    page = write_comparison([output, other], tmp_path / "cmp").read_text()
    assert "| fpn-tiny | cnn |" in page and "| segformer-tiny | transformer |" in page


def test_the_registry_refuses_what_would_go_wrong_later():
    with pytest.raises(ValueError, match="registered already"):
        register_model(get_entry("unet"))
    with pytest.raises(ValueError, match="parent 'nope' is not registered"):
        register_model(ModelEntry("orphan", family="cnn", description="", config_class=SmpSegConfig,
                                  model_class=SmpForSemanticSegmentation, parent="nope"))
    with pytest.raises(UsageError, match="unknown model 'pspnet'; choose one of: unet, deeplabv3plus"):
        create_model("pspnet")
    with pytest.raises(PretrainedUnavailable, match="model segformer-tiny: .*has no default pretrained weights"):
        create_model("segformer-tiny", pretrained=True)
    with pytest.raises(UsageError, match="has no recipe 'nope'; it has: published, quick-10, quick-15, fitted, demo"):
        get_entry("vit-tiny").recipe("nope")


def test_python_callers_get_python_wording_and_the_command_line_its_options(tmp_path):
    """The model layer names no command-line option; the argument layer words the same facts with them."""
    from hf_segcompare.config.arguments import ModelArguments
    from hf_segcompare.labels import VOC_LABELS
    from hf_segcompare.pipeline.loading import load_model

    bad = tmp_path / "encoder.pth"
    bad.write_bytes(b"not a state dict")
    with pytest.raises(PretrainedUnavailable) as raised:
        create_model("unet-tiny", pretrained=str(bad))
    assert "--" not in str(raised.value) and "pretrained=None" in str(raised.value)
    with pytest.raises(PretrainedUnavailable, match="no such file or folder, and not a Hub id either"):
        create_model("vit-tiny", pretrained=str(tmp_path / "no" / "such" / "folder"))
    with pytest.raises(UsageError) as raised:
        load_model(ModelArguments(model="unet-tiny", pretrained=str(bad)), VOC_LABELS)
    assert "--model unet-tiny" in str(raised.value) and "--from_scratch" in str(raised.value)
    assert "encoder.pth" in str(raised.value) and "pretrained=" not in str(raised.value)


def test_labels_come_from_the_caller_not_from_voc():
    model = create_model("segformer-tiny", id2label={0: "road", 1: "car", 2: "sky"}, ignore_index=0 + 250)
    assert model.config.num_labels == 3 and model.config.semantic_loss_ignore_index == 250
    logits = model(torch.zeros(1, 3, 32, 32)).logits
    assert logits.shape[1] == 3
    assert create_model("unet-tiny", num_labels=5).config.id2label == {i: f"class_{i}" for i in range(5)}
