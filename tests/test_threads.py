"""Threads per process: what accelerate leaves a CPU process, and what the user chose."""

from __future__ import annotations

import json

from hf_segcompare.engine.threads import chosen_threads

from .conftest import launch

LAUNCHED = {"ACCELERATE_DYNAMO_BACKEND": "NO"}
LAUNCHER = b"/venv/bin/python\0/venv/bin/accelerate\0launch\0scripts/run_seg.py\0"


def test_accelerates_one_thread_becomes_the_cores_per_local_process():
    environ = {**LAUNCHED, "OMP_NUM_THREADS": "1"}  # what accelerate exports when nobody chose
    assert chosen_threads(environ, b"PATH=/bin\0", LAUNCHER, cores=8) == 8
    assert chosen_threads({**environ, "LOCAL_WORLD_SIZE": "2"}, b"PATH=/bin\0", LAUNCHER, cores=8) == 4
    assert chosen_threads({**environ, "LOCAL_WORLD_SIZE": "16"}, b"PATH=/bin\0", LAUNCHER, cores=8) == 1


def test_a_choice_the_user_made_is_left_alone():
    environ = {**LAUNCHED, "OMP_NUM_THREADS": "1"}
    assert chosen_threads(environ, b"PATH=/bin\0OMP_NUM_THREADS=1\0", LAUNCHER, cores=8) is None
    option = b"accelerate\0launch\0--num_cpu_threads_per_process\x001\0run_seg.py\0"
    assert chosen_threads(environ, b"PATH=/bin\0", option, cores=8) is None
    option = b"accelerate\0launch\0--num_cpu_threads_per_process=1\0run_seg.py\0"
    assert chosen_threads(environ, b"PATH=/bin\0", option, cores=8) is None
    # Plain python (no accelerate launcher): torch's own choice stands.
    assert chosen_threads({"OMP_NUM_THREADS": "1"}, b"", b"", cores=8) is None


def test_a_launched_run_records_the_threads_it_used(voc_tree, tmp_path):
    import os

    completed = launch(["--model", "segformer-tiny", "--from_scratch", "--recipe", "demo", "--dataset_name", "voc",
                        "--data_dir", str(voc_tree), "--output_dir", str(tmp_path / "out"), "--max_steps", "1",
                        "--do_eval", "false", "--save_strategy", "no"], tmp_path,
                       env={**_env_without_omp(tmp_path)})
    assert completed.returncode == 0, completed.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["environment"]["torch_threads"] == len(os.sched_getaffinity(0))


def _env_without_omp(tmp_path):
    from .conftest import script_env

    env = script_env(tmp_path)
    env.pop("OMP_NUM_THREADS", None)
    return env
