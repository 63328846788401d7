"""Distributed launch without GPUs: the rendered accelerate configs load in accelerate, world sizes come from
the job's GPUs, impossible setups fail with the params key to change, and the CLI relaunches itself."""

from __future__ import annotations

import copy
import sys

import pytest

from counseltune.train import launch


def test_rendered_ddp_and_fsdp_configs_load_in_accelerate(tmp_path):
    from accelerate.commands.config.config_args import load_config_from_file

    for strategy, kind in (("ddp", "MULTI_GPU"), ("fsdp", "FSDP")):
        path = launch.write_config(tmp_path / f"{strategy}.yaml", launch.accelerate_config(strategy, 4, "bf16"))
        config = load_config_from_file(str(path))
        assert str(config.distributed_type).endswith(kind) and config.num_processes == 4
        assert config.mixed_precision == "bf16" and config.num_machines == 1
    assert config.fsdp_config["fsdp_use_orig_params"] is True  # LoRA params sit beside frozen ones


@pytest.mark.parametrize("env, expected", [
    ({"SLURM_GPUS_ON_NODE": "4"}, 4),
    ({"SLURM_GPUS_PER_NODE": "a100:2"}, 2),
    ({"CUDA_VISIBLE_DEVICES": "0,1,2"}, 3),
])
def test_auto_world_size_is_one_rank_per_gpu_of_the_job(env, expected):
    assert launch.world_size({"strategy": "ddp", "num_processes": "auto"}, env) == expected


def test_an_explicit_world_size_wins():
    assert launch.world_size({"strategy": "ddp", "num_processes": 8}, {"SLURM_GPUS_ON_NODE": "2"}) == 8


def test_impossible_setups_name_the_key_to_change(params):
    mp = copy.deepcopy(params["models"]["glm-4-9b-chat"])
    with pytest.raises(launch.LaunchError, match=r"resources.gpus.*strategy: single"):
        launch.check("glm-4-9b-chat", mp, 1)
    mp["quantization"] = "4bit"
    with pytest.raises(launch.LaunchError, match="QLoRA"):
        launch.check("glm-4-9b-chat", mp, 2)
    launch.check("smollm2-135m-instruct", params["models"]["smollm2-135m-instruct"], 1)


def test_the_launch_line_repeats_the_stage_command_under_accelerate(tmp_path):
    argv = ["finetune", "--model", "glm-4-9b-chat", "--base", "models/base/glm-4-9b-chat"]
    cmd = launch.launch_command(tmp_path / "accelerate.yaml", 2, argv)
    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    assert cmd[cmd.index("--num_processes") + 1] == "2" and cmd[-len(argv) - 2:] == ["-m", "counseltune.cli", *argv]
    assert launch.under_launcher({"LOCAL_RANK": "0"}) and not launch.under_launcher({})


def test_a_ddp_model_on_a_machine_without_gpus_fails_cleanly(tmp_path, monkeypatch, capsys):
    import yaml

    from counseltune.cli import main
    from tests.conftest import REPO

    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["models"]["smollm2-135m-instruct"]["distributed"] = {"strategy": "ddp", "num_processes": "auto"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_GPUS_ON_NODE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    code = main(["finetune", "--params", str(tmp_path / "params.yaml"), "--model", "smollm2-135m-instruct",
                 "--base", "b", "--data", "d", "--out", "o", "--metrics", "m.json", "--live", "l",
                 "--checkpoints", str(tmp_path / "ck"), "--sft-stats", "s.json"])
    assert code == 1 and "needs at least 2 GPUs" in capsys.readouterr().err


def test_params_refuse_more_ranks_than_the_job_requests_gpus(params):
    from counseltune.config import ParamsError, validate_params

    bad = copy.deepcopy(params)
    bad["models"]["glm-4-9b-chat"]["distributed"]["num_processes"] = 4
    with pytest.raises(ParamsError, match="resources.gpus is 2"):
        validate_params(bad)
