"""Recipes: what the Trainer's optimizer and scheduler actually hold, the batch split, run_args.json."""

from __future__ import annotations

import json

import pytest
import torch

from hf_segcompare.config.arguments import RUN_ARGS_FILE, parse_args, recipe_defaults, resolved_args, write_run_args
from hf_segcompare.engine.optim import no_decay_parameter_names
from hf_segcompare.engine.trainer import SegTrainer
from hf_segcompare.errors import UsageError
from hf_segcompare.models import create_model

from .conftest import TINY_TREE, run_seg_in_process

TINY = {"unet": "unet-tiny", "deeplabv3plus": "deeplabv3plus-tiny", "vit": "vit-tiny", "segformer-b0": "segformer-tiny"}

# What each source publishes (the mmsegmentation configs named in hf_segcompare/recipes.py),
# written out here independently of the recipe table.
MMSEG_VOC_SGD = {"optimizer": torch.optim.SGD, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4, "head_x": 1.0,
                 "warmup": 0, "lr_end": 1e-4, "power": 0.9, "decay_everything": True}
PUBLISHED = {
    "unet": MMSEG_VOC_SGD,
    "deeplabv3plus": MMSEG_VOC_SGD,
    "segformer-b0": {"optimizer": torch.optim.AdamW, "lr": 6e-5, "weight_decay": 0.01, "head_x": 10.0,
                     "warmup": 1500, "lr_end": 0.0, "power": 1.0, "decay_everything": False},
    "vit": {"optimizer": torch.optim.SGD, "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0, "head_x": 10.0,
            "warmup": 0, "lr_end": 1e-4, "power": 0.9, "decay_everything": True},
}


def _poly(step: int, base: float, warmup: int, total: int, lr_end: float, power: float) -> float:
    """Linear warm-up from 0, then (base - end) * (1 - progress) ** power + end."""
    if step < warmup:
        return base * step / warmup
    return (base - lr_end) * (1 - (step - warmup) / (total - warmup)) ** power + lr_end


def _trainer_for(argv: list[str], tmp_path):
    model_args, _, training_args = parse_args([*argv, "--output_dir", str(tmp_path / "out"), "--eval_strategy", "no"])
    model = create_model(model_args.model)
    trainer = SegTrainer(model, training_args)
    return model, training_args, trainer


@pytest.mark.parametrize("model", list(PUBLISHED))
def test_published_recipe_is_what_the_trainers_optimizer_and_scheduler_hold(model, tmp_path):
    expected = PUBLISHED[model]
    net, args, trainer = _trainer_for(["--model", TINY[model], "--dataset_name", "voc"], tmp_path)
    assert args.recipe == "published" and args.max_steps == 20_000 and args.global_batch_size() == 16
    trainer.create_optimizer_and_scheduler(num_training_steps=args.max_steps)
    optimizer, scheduler = trainer.optimizer, trainer.lr_scheduler
    assert type(optimizer) is expected["optimizer"]

    # Every parameter sits in exactly one group, with the learning rate and decay its name calls for.
    head = {id(p) for n, p in net.named_parameters() if n.startswith("decode_head.")}
    exempt = set() if expected["decay_everything"] else {id(p) for n, p in net.named_parameters() if "layer_norm" in n}
    grouped = [id(p) for group in optimizer.param_groups for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in net.parameters())
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            factor = expected["head_x"] if id(parameter) in head else 1.0
            assert group["initial_lr"] == pytest.approx(expected["lr"] * factor)
            decay = 0.0 if id(parameter) in exempt else expected["weight_decay"]
            assert group["weight_decay"] == decay
        if "momentum" in expected:
            assert group["momentum"] == expected["momentum"] and not group["nesterov"]
    if expected["head_x"] != 1.0:
        assert head, "the model should have a decode head"
        assert {g["initial_lr"] for g in optimizer.param_groups} == {
            expected["lr"],
            expected["lr"] * expected["head_x"],
        }

    # The schedule, read off the scheduler step by step: warm-up, then polynomial decay to lr_end
    # (transformers scales every group by one factor, so a x10 group ends at 10 x lr_end).
    checkpoints = {0, 1, expected["warmup"], 5_000, 10_000, 19_999, 20_000}
    seen = {}
    for step in range(20_001):
        if step in checkpoints:
            seen[step] = [group["lr"] for group in optimizer.param_groups]
        optimizer.step()  # no gradients: nothing moves, but the scheduler wants an optimizer step first
        scheduler.step()
    for step, lrs in seen.items():
        for group, lr in zip(optimizer.param_groups, lrs):
            factor = group["initial_lr"] / expected["lr"]
            want = factor * _poly(
                step, expected["lr"], expected["warmup"], 20_000, expected["lr_end"], expected["power"]
            )
            assert lr == pytest.approx(want, rel=1e-6, abs=1e-12), (step, group["name"])


@pytest.mark.parametrize("recipe, epochs", [("quick-10", 10), ("quick-15", 15)])
def test_quick_recipes_replay_an_epoch_budget_with_the_published_optimizer(recipe, epochs, tmp_path):
    _, args, trainer = _trainer_for(
        ["--model", "segformer-tiny", "--dataset_name", "voc", "--recipe", recipe], tmp_path
    )
    assert args.num_train_epochs == epochs and args.max_steps == -1
    assert args.learning_rate == 6e-5 and args.lr_multipliers == "decode_head=10"
    assert args.warmup_steps == pytest.approx(1500 / 20_000)  # the published warm-up's share of the run
    trainer.create_optimizer_and_scheduler(num_training_steps=1000)
    assert args.get_warmup_steps(1000) == 75
    assert trainer.optimizer.param_groups[0]["lr"] == 0.0  # warming up


def test_demo_recipe_is_the_default_on_the_embedded_data_and_the_command_line_wins():
    _, data, demo = parse_args(["--model", "segformer-b0", "--from_scratch"])
    assert demo.recipe == "demo" and demo.learning_rate == 2e-3 and demo.output_dir == "outputs/segformer-b0"
    assert demo.do_train and demo.do_eval and data.crop_size is None  # demo: crop fits the data
    _, _, unet = parse_args(["--model", "unet-tiny", "--from_scratch"])
    assert unet.learning_rate == 1e-3 and unet.output_dir == "outputs/unet-tiny"
    _, data, given = parse_args(["--model", "segformer-b0", "--dataset_name", "voc", "--learning_rate", "1e-4",
                                 "--crop_size", "320", "--lr_multipliers", "", "--output_dir", "elsewhere"])
    assert given.recipe == "published" and given.learning_rate == 1e-4 and data.crop_size == 320
    assert given.lr_multipliers == "" and given.output_dir == "elsewhere" and given.weight_decay == 0.01


def test_the_global_batch_splits_over_processes_or_the_user_is_told():
    assert recipe_defaults("segformer-b0", "published", world_size=2)["per_device_train_batch_size"] == 8
    assert recipe_defaults("segformer-b0", "published", gradient_accumulation_steps=4, world_size=2)[
        "per_device_train_batch_size"] == 2
    with pytest.raises(UsageError, match="global batch of 16, which does not split over 3 process"):
        recipe_defaults("segformer-b0", "published", world_size=3)


def test_a_multiplier_that_matches_no_parameter_is_refused_by_name(tmp_path):
    with pytest.raises(UsageError, match=r"no parameter name contains \['decoder_head'\]"):
        _trainer_for(["--model", "vit-tiny", "--dataset_name", "voc", "--lr_multipliers", "decoder_head=10"], tmp_path)
    with pytest.raises(UsageError, match="is not NAME=FACTOR"):
        _trainer_for(["--model", "vit-tiny", "--dataset_name", "voc", "--lr_multipliers", "decode_head"], tmp_path)


def test_no_decay_rules():
    model = create_model("segformer-tiny")
    names = {name for name, _ in model.named_parameters()}
    transformers_rule = no_decay_parameter_names(model, "transformers")
    assert {n for n in names if n.endswith(".bias")} <= transformers_rule
    assert no_decay_parameter_names(model, "none") == set()
    layer_norms = no_decay_parameter_names(model, "layer_norm")
    assert layer_norms and all("layer_norm" in n for n in layer_norms)
    assert "decode_head.batch_norm.weight" not in layer_norms  # as mmseg: the head's BN still decays


def test_run_args_file_replays_to_the_same_arguments(tmp_path):
    argv = ["--model", "vit-tiny", "--dataset_name", "voc", "--data_dir", "/data/voc", "--recipe", "quick-10",
            "--learning_rate", "0.005", "--output_dir", str(tmp_path / "out"), "--hub_token", "secret-token"]
    parsed = parse_args(argv)
    path = write_run_args(tmp_path / "out", *parsed)
    assert path.name == RUN_ARGS_FILE and "secret-token" not in path.read_text()
    replayed = parse_args([str(path)])
    assert resolved_args(*replayed) == resolved_args(*parsed)
    # Options after the file override it.
    _, _, changed = parse_args([str(path), "--max_steps", "7"])
    assert changed.max_steps == 7 and changed.learning_rate == 0.005
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "vit-tiny", "learning_rat": 1}))
    with pytest.raises(UsageError, match=r"bad\.json: unknown option\(s\) \['learning_rat'\]"):
        parse_args([str(bad)])
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": "vit-tiny",')
    with pytest.raises(UsageError, match=r"broken\.json: not valid JSON"):
        parse_args([str(broken)])


def test_a_quick_recipe_run_records_its_groups_and_arguments(voc_tree, tmp_path, capsys):
    """A real (tiny) training run: steps from the epoch budget, groups read from the optimizer it used."""
    output_dir = tmp_path / "out"
    status, stderr, _ = run_seg_in_process(
        ["--model", "segformer-tiny", "--from_scratch", "--dataset_name", "voc", "--data_dir", str(voc_tree),
         "--recipe", "quick-10", "--crop_size", "64", "--output_dir", str(output_dir), "--eval_strategy", "no",
         "--save_strategy", "no"], capsys)
    assert status == 0, stderr[-3000:]
    results = json.loads((output_dir / "results.json").read_text())
    recipe = results["recipe"]
    assert recipe["name"] == "quick-10" and "segformer_mit-b0_8xb2-160k_ade20k-512x512.py" in recipe["source"]
    assert recipe["overridden"] == {"crop_size": 64} and recipe["global_batch_size"] == 16
    assert recipe["optimizer"] == "AdamW"
    lrs = sorted(group["initial_lr"] for group in recipe["param_groups"])
    assert lrs[0] == pytest.approx(6e-5) and lrs[-1] == pytest.approx(6e-4)
    assert sum(group["parameters"] for group in recipe["param_groups"]) == results["parameters"]
    # 16 training images at a global batch of 16: one step per epoch, ten epochs.
    assert TINY_TREE["num_train"] == 16 and results["train"]["steps"] == 10
    run_args = json.loads((output_dir / RUN_ARGS_FILE).read_text())
    assert run_args["recipe"] == "quick-10" and run_args["crop_size"] == 64 and run_args["eval_size"] == 64
    assert run_args["lr_multipliers"] == "decode_head=10" and run_args["model"] == "segformer-tiny"


def test_an_interrupted_run_resumes_with_the_recipes_groups(voc_tree, tmp_path, capsys):
    """Checkpoints hold the grouped optimizer's state; resuming must rebuild the same groups."""
    output_dir = tmp_path / "out"
    common = ["--model", "segformer-tiny", "--from_scratch", "--dataset_name", "voc", "--data_dir", str(voc_tree),
              "--crop_size", "64", "--output_dir", str(output_dir), "--eval_strategy", "no",
              "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1"]
    status, stderr, _ = run_seg_in_process([*common, "--max_steps", "2"], capsys)
    assert status == 0, stderr[-3000:]
    checkpoint = output_dir / "checkpoint-2"
    saved_state = torch.load(checkpoint / "optimizer.pt", weights_only=True)
    # rest with decay, LayerNorms without, decode head at x10: the published SegFormer groups
    assert len(saved_state["param_groups"]) == 3
    # A longer budget is a longer schedule: the resume accepts it when asked to (and records it).
    status, stderr, _ = run_seg_in_process([*common, "--max_steps", "4", "--resume_from_checkpoint", str(checkpoint),
                                            "--allow_changed_options"], capsys)
    assert status == 0, stderr[-3000:]
    results = json.loads((output_dir / "results.json").read_text())
    assert results["train"]["steps"] == 4
    assert [entry["step"] for entry in results["train_loss"]] == [1, 2, 3, 4]
    assert results["changed_on_resume"] == [{"option": "max_steps", "before": 2, "after": 4, "at_step": 2}]


def test_from_recipe_gives_python_the_command_lines_arguments(tmp_path):
    """No parse_args: the same resolved arguments, training fields only, and the budget rule."""
    from hf_segcompare.config.arguments import from_recipe

    args = from_recipe("unet", "published", output_dir=str(tmp_path))
    _, _, parsed = parse_args(["--model", "unet", "--dataset_name", "voc", "--output_dir", str(tmp_path)])
    assert args.to_dict() == parsed.to_dict()
    assert args.optim == "sgd" and args.max_steps == 20_000 and args.global_batch_size() == 16
    assert args.remove_unused_columns is False and args.batch_eval_metrics is True
    with pytest.raises(UsageError, match=r"\['crop_size'\] are DataArguments fields"):
        from_recipe("unet", "published", crop_size=256)
    with pytest.raises(UsageError, match=r"no field \['learning_rat'\]"):
        from_recipe("unet", "published", learning_rat=1e-3)
    epochs = from_recipe("segformer-tiny", "quick-10", num_train_epochs=2)
    assert epochs.max_steps == -1 and epochs.num_train_epochs == 2 and epochs.lr_multipliers == "decode_head=10"
