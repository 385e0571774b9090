"""The four architectures: exact sizes, the forward contract, and save/load through the Auto classes."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForSemanticSegmentation, TrainingArguments

from hf_segcompare.engine.trainer import SegTrainer
from hf_segcompare.labels import IGNORE_INDEX, VOC_CLASSES, VOC_LABELS
from hf_segcompare.models import SmpForSemanticSegmentation, SmpSegConfig, count_parameters, create_model, list_models

# in the fast subset, which CI also runs on constraints/minimum.txt (the declared lower bounds)
pytestmark = pytest.mark.fast

REFERENCE_PARAMETERS = {  # the reference counts the project was specified with: 21 classes, random init
    "unet": 32_524_005,
    "deeplabv3plus": 26_682_725,
    "segformer-b0": 3_719_541,
}
VIT_B16_ENCODER = 85_798_656  # ViTModel without pooler at 224 px
VIT_PUP_HEAD = 3_546_389  # SETR-PUP head, 256 channels, 21 classes
MODELS = list_models()
TINY_MODELS = [f"{name.split('-')[0]}-tiny" for name in MODELS]


def test_registry_lists_the_four_models():
    assert MODELS == ["unet", "deeplabv3plus", "vit", "segformer-b0"]
    assert set(TINY_MODELS) <= set(list_models(include_test_variants=True))


@pytest.mark.parametrize("name", TINY_MODELS)
def test_test_variants_are_tiny(name):
    """Well under a million parameters each, so the suite stays fast as it grows."""
    assert count_parameters(create_model(name)) < 600_000


def test_unknown_model_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown model 'pspnet'.*unet, deeplabv3plus, vit, segformer-b0"):
        create_model("pspnet")


@pytest.mark.parametrize("name", MODELS)
def test_parameter_counts_are_exact(name):
    model = create_model(name)
    assert model.config.num_labels == len(VOC_CLASSES)
    if name == "vit":
        assert count_parameters(model.vit) == VIT_B16_ENCODER
        assert count_parameters(model.decode_head) == VIT_PUP_HEAD
        assert count_parameters(model) == VIT_B16_ENCODER + VIT_PUP_HEAD
    else:
        assert count_parameters(model) == REFERENCE_PARAMETERS[name]


def _batch(size=64, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(batch, 3, size, size, generator=generator)
    labels = torch.randint(0, len(VOC_CLASSES), (batch, size, size), generator=generator)
    labels[:, :, :10] = IGNORE_INDEX
    return pixel_values, labels


@pytest.mark.parametrize("name", TINY_MODELS)
def test_forward_contract_and_loss_ignores_255(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    with torch.no_grad():  # random class biases, so that the loss depends on which pixels count
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d) and module.out_channels == len(VOC_CLASSES):
                module.bias.normal_(0, 2)
    pixel_values, labels = _batch()
    with torch.no_grad():
        output = model(pixel_values=pixel_values, labels=labels)
    assert output.logits.shape[:2] == (2, len(VOC_CLASSES))
    upsampled = torch.nn.functional.interpolate(
        output.logits, size=labels.shape[-2:], mode="bilinear", align_corners=False
    )
    valid = labels != IGNORE_INDEX
    manual = torch.nn.functional.cross_entropy(upsampled.permute(0, 2, 3, 1)[valid], labels[valid])
    assert torch.allclose(output.loss, manual, atol=1e-5)
    # Counting the 255 pixels as any class would give another loss.
    assert not torch.allclose(
        output.loss, torch.nn.functional.cross_entropy(upsampled, labels.clamp(max=20)), atol=1e-4
    )


@pytest.mark.parametrize("name", MODELS)
def test_save_and_auto_load_give_identical_logits(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin")), "weights must be safetensors only"
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(model)
    assert loaded.config.segcompare_model == name
    assert loaded.config.id2label == model.config.id2label
    pixel_values, _ = _batch(size=64, batch=1, seed=1)
    with torch.no_grad():
        assert torch.equal(model(pixel_values).logits, loaded(pixel_values).logits)


@pytest.mark.parametrize("name", ["unet-tiny", "deeplabv3plus-tiny", "vit-tiny"])
def test_from_pretrained_initialises_only_the_missing_layers(name, tmp_path):
    """A head resized for another label set is freshly initialised; every loaded weight is kept."""
    torch.manual_seed(0)
    model = create_model(name)
    model.save_pretrained(tmp_path)
    for attempt in range(3):  # uninitialised memory can look sane once; three loads cannot all be lucky
        loaded = AutoModelForSemanticSegmentation.from_pretrained(
            tmp_path, num_labels=3, id2label={0: "a", 1: "b", 2: "c"}, label2id={"a": 0, "b": 1, "c": 2},
            ignore_mismatched_sizes=True,
        )
        original, reloaded = model.state_dict(), loaded.state_dict()
        resized = [key for key in reloaded if reloaded[key].shape != original[key].shape]
        assert resized and all(key.startswith(("smp.segmentation_head.", "decode_head.")) for key in resized)
        for key in reloaded:
            if key not in resized:
                assert torch.equal(reloaded[key], original[key]), key
        for key in resized:
            if key.endswith("weight"):
                std = reloaded[key].float().std().item()
                assert 1e-3 < std < 10, f"{key}: std {std} is not a fresh initialisation"
            else:
                assert torch.equal(reloaded[key], torch.zeros_like(reloaded[key])), key


@pytest.mark.parametrize("name", TINY_MODELS)
def test_trainer_averages_the_loss_itself_and_leaves_the_callers_objects_alone(name, tmp_path):
    """SegFormer's forward takes **kwargs; Trainer must still not hand it num_items_in_batch. The
    caller's arguments and model keep every value they had (SegTrainer sets what it needs on a copy)."""
    args = TrainingArguments(output_dir=str(tmp_path), report_to="none")
    model = create_model(name)
    before, had_attribute = args.to_dict(), "accepts_loss_kwargs" in vars(model)
    trainer = SegTrainer(model, args)
    assert trainer.model_accepts_loss_kwargs is False
    assert trainer.args.batch_eval_metrics is True and trainer.args.remove_unused_columns is False
    assert args.to_dict() == before and args.remove_unused_columns is True and args.batch_eval_metrics is False
    assert ("accepts_loss_kwargs" in vars(model)) == had_attribute


def test_deeplabv3plus_uses_the_papers_rates_for_output_stride_16():
    model = create_model("deeplabv3plus")
    rates = sorted({m.dilation for m in model.smp.decoder.modules() if getattr(m, "dilation", (1, 1)) != (1, 1)})
    assert rates == [(6, 6), (12, 12), (18, 18)]
    assert model.config.arch_kwargs["encoder_output_stride"] == 16
    # A config saved before the rates were set (no key) keeps smp's default, so it loads as trained.
    older = SmpForSemanticSegmentation(SmpSegConfig(arch="deeplabv3plus", encoder_name="tu-test_resnet",
                                                   id2label={0: "a", 1: "b"}))
    assert sorted({m.dilation for m in older.smp.decoder.modules()
                   if getattr(m, "dilation", (1, 1)) != (1, 1)}) == [(12, 12), (24, 24), (36, 36)]


def test_atrous_rates_can_be_chosen_and_only_for_deeplabv3plus():
    from hf_segcompare.config.arguments import ModelArguments, check_args
    from hf_segcompare.errors import UsageError
    from hf_segcompare.pipeline.loading import load_model

    model = load_model(ModelArguments(model="deeplabv3plus-tiny", from_scratch=True, atrous_rates=[12, 24, 36]),
                       VOC_LABELS)
    assert model.config.arch_kwargs == {"encoder_output_stride": 16, "decoder_atrous_rates": [12, 24, 36],
                                        "decoder_channels": 32}
    with pytest.raises(UsageError, match=r"--atrous_rates applies to models with an ASPP module \(deeplabv3plus\), "
                                         "not --model unet"):
        check_args(ModelArguments(model="unet", from_scratch=True, atrous_rates=[6, 12, 18]))
    with pytest.raises(UsageError, match="give three positive integers"):
        check_args(ModelArguments(model="deeplabv3plus", from_scratch=True, atrous_rates=[6, 12]))


def test_a_training_set_without_ids_is_refused_by_name(tmp_path):
    """Each sample's augmentation is seeded by its id: a set without one is named at construction,
    not as a KeyError deep in the data loader."""
    import numpy as np
    from datasets import Dataset
    from PIL import Image

    from hf_segcompare.errors import UsageError

    image = Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8))
    mask = Image.fromarray(np.zeros((32, 32), dtype=np.uint8))
    dataset = Dataset.from_dict({"image": [image], "label": [mask]})
    with pytest.raises(UsageError, match="train_dataset has no 'id' column"):
        SegTrainer(create_model("segformer-tiny"), TrainingArguments(output_dir=str(tmp_path), report_to="none"),
                   dataset)


@pytest.mark.parametrize("name", TINY_MODELS)
def test_return_dict_false_gives_the_output_as_a_tuple(name):
    """transformers' convention, as SegFormer keeps it: (loss, logits), Nones left out."""
    torch.manual_seed(0)
    model = create_model(name).eval()
    pixel_values, labels = _batch()
    output = model(pixel_values, labels=labels)
    as_tuple = model(pixel_values, labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    torch.testing.assert_close(as_tuple[0], output.loss)
    torch.testing.assert_close(as_tuple[1], output.logits)
    (logits,) = model(pixel_values, return_dict=False)
    torch.testing.assert_close(logits, output.logits)
    if not name.startswith("segformer"):  # transformers 5.24's own SegFormer fails on the config's False
        model.config.return_dict = False  # the config's setting counts too
        assert isinstance(model(pixel_values), tuple)


def model_stride(name: str) -> int:
    return 16 if name.startswith("deeplabv3plus") else 32


@pytest.mark.parametrize("name", TINY_MODELS)
def test_output_hidden_states_returns_the_encoders_features(name):
    torch.manual_seed(0)
    model = create_model(name).eval()
    pixel_values, _ = _batch(size=64, batch=2)
    assert model(pixel_values).hidden_states is None
    hidden_states = model(pixel_values, output_hidden_states=True).hidden_states
    assert isinstance(hidden_states, tuple) and len(hidden_states) >= 2
    assert all(state.shape[0] == 2 for state in hidden_states)
    if name.startswith("vit"):  # ViTModel's: embeddings then each layer, [CLS] + 16 patch tokens
        assert len(hidden_states) == model.config.num_hidden_layers + 1
        assert hidden_states[-1].shape[1] == 1 + (64 // model.config.patch_size) ** 2
    else:  # feature maps, coarser stage by stage (DeepLabV3+'s dilated last stage keeps stride 16)
        assert all(state.dim() == 4 for state in hidden_states)
        sizes = [state.shape[-1] for state in hidden_states]
        assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 64 // model_stride(name)
    model.config.output_hidden_states = True
    assert model(pixel_values).hidden_states is not None


@pytest.mark.parametrize("name", TINY_MODELS)
def test_gradient_checkpointing_gives_the_same_gradients_and_batchnorm_statistics(name):
    """The CNNs checkpoint their encoder stages; what a step computes must not change (BatchNorm's
    running statistics included, which a recomputed stage would otherwise update twice)."""
    pixel_values, labels = _batch(size=64, batch=2)

    def one_step(checkpointing: bool):
        torch.manual_seed(0)
        model = create_model(name).train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            assert model.is_gradient_checkpointing
        model(pixel_values, labels=labels).loss.backward()
        gradients = {key: value.grad.clone() for key, value in model.named_parameters() if value.grad is not None}
        return model.state_dict(), gradients

    plain_state, plain_gradients = one_step(False)
    checkpointed_state, checkpointed_gradients = one_step(True)
    assert plain_gradients.keys() == checkpointed_gradients.keys() and len(plain_gradients) > 10
    for key in plain_gradients:
        torch.testing.assert_close(checkpointed_gradients[key], plain_gradients[key], msg=key)
    assert plain_state.keys() == checkpointed_state.keys()  # the stages keep their names
    for key in plain_state:
        torch.testing.assert_close(checkpointed_state[key], plain_state[key], msg=key)
