import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from metatts.cli.train import main
from metatts.model.checkpoint import load_checkpoint
from metatts.train.data import StepBatches
from metatts.train.logging import read_log

ROOT = Path(__file__).resolve().parents[1]
SPEECH = ROOT / "tests" / "fixtures" / "speech"


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    return tmp_path_factory.mktemp("features")


def args(run_dir, features, steps, *extra):
    return ["--config", str(ROOT / "configs" / "tiny.json"), "--quiet",
            "--set", f"train.run_dir={run_dir}", "--set", f"train.steps={steps}",
            "--set", f'data.datasets=["{SPEECH}"]', "--set", f"data.cache_dir={features}",
            "--set", "train.checkpoint_every=2", "--set", "train.validate_every=2",
            "--set", "train.log_every=1", *extra]


def test_train_writes_checkpoint_log_and_plot(tmp_path, features, capsys):
    assert main(args(tmp_path / "run", features, 3)) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 3 and summary["val"]["total"] > 0
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.step == 3 and ckpt.speakers == ("awb", "joe", "kokoro_jf_alpha", "slt")
    assert {p.name for p in ckpt.path.iterdir()} == {
        "model.safetensors", "model.json", "training.safetensors", "training.json"}
    records = read_log(tmp_path / "run" / "log.jsonl")
    assert [r["step"] for r in records if r["split"] == "train"] == [1, 2, 3]
    assert {r["step"] for r in records if r["split"] == "val"} == {2, 3}
    assert (tmp_path / "run" / "losses.png").stat().st_size > 1000
    # an existing run is not overwritten without --resume
    assert main(args(tmp_path / "run", features, 3)) == 2
    assert "--resume" in capsys.readouterr().err
    # nor a kept log whose checkpoints are gone (a finished run's log the README cites)
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "log.jsonl").write_text((tmp_path / "run" / "log.jsonl").read_text())
    before = (kept / "log.jsonl").read_bytes()
    assert main(args(kept, features, 3)) == 2
    said = capsys.readouterr().err
    assert "holds a training log (log.jsonl) but no checkpoint" in said
    assert "train.run_dir" in said and (kept / "log.jsonl").read_bytes() == before


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, features):
    assert main(args(tmp_path / "straight", features, 4)) == 0
    assert main(args(tmp_path / "resumed", features, 2)) == 0
    assert main(args(tmp_path / "resumed", features, 4, "--resume")) == 0
    for name in ("model.safetensors", "training.safetensors"):
        a = load_file(tmp_path / "straight/checkpoints/step_00000004" / name)
        b = load_file(tmp_path / "resumed/checkpoints/step_00000004" / name)
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    logs = [[(r["split"], r["step"], r["total"]) for r in read_log(tmp_path / d / "log.jsonl")]
            for d in ("straight", "resumed")]
    assert logs[0] == logs[1]


def test_weight_average_is_saved_as_the_model_and_resumes_exactly(tmp_path, features):
    ema = ("--set", "train.ema_decay=0.5")
    assert main(args(tmp_path / "straight", features, 4, *ema)) == 0
    assert main(args(tmp_path / "resumed", features, 2, *ema)) == 0
    assert main(args(tmp_path / "resumed", features, 4, "--resume", *ema)) == 0
    names = ("model.safetensors", "training.safetensors", "training_weights.safetensors")
    for name in names:
        a = load_file(tmp_path / "straight/checkpoints/step_00000004" / name)
        b = load_file(tmp_path / "resumed/checkpoints/step_00000004" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    step = tmp_path / "straight/checkpoints/step_00000004"
    average, optimized = (load_file(step / n) for n in names[::2])
    # the model is the average, the optimized weights differ from it
    moved = [k for k in optimized if not torch.equal(average[k], optimized[k])]
    assert len(moved) > len(optimized) // 2
    # averaging leaves the optimization itself alone
    assert main(args(tmp_path / "plain", features, 4)) == 0  # the same steps, not averaged
    plain = load_file(tmp_path / "plain/checkpoints/step_00000004/model.safetensors")
    assert all(torch.allclose(plain[k], optimized[k]) for k in optimized if "speaker.new" != k)
    # turning averaging off again resumes from the optimized weights, not the average
    assert main(args(tmp_path / "resumed", features, 6, "--resume")) == 0
    assert main(args(tmp_path / "plain", features, 6, "--resume")) == 0
    a = load_file(tmp_path / "resumed/checkpoints/step_00000006/model.safetensors")
    b = load_file(tmp_path / "plain/checkpoints/step_00000006/model.safetensors")
    assert all(torch.allclose(a[k], b[k]) for k in a)
    assert not (tmp_path / "resumed/checkpoints/step_00000006/training_weights.safetensors"
                ).exists()


def test_stop_after_ends_with_a_checkpoint_that_resumes(tmp_path, features, capsys):
    assert main(args(tmp_path / "run", features, 4, "--stop-after", "1e-9")) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 1  # time was up at the first check
    assert load_checkpoint(tmp_path / "run").step == 1
    assert main(args(tmp_path / "run", features, 4, "--resume")) == 0
    assert load_checkpoint(tmp_path / "run").step == 4
    assert main(args(tmp_path / "run", features, 4, "--stop-after", "0")) == 2
    assert "--stop-after" in capsys.readouterr().err


def test_bad_config_and_missing_resume_are_clear_errors(tmp_path, features, capsys):
    assert main(args(tmp_path / "r", features, 2, "--set", "train.stepz=3")) == 2
    assert "train.stepz" in capsys.readouterr().err
    assert main(args(tmp_path / "r", features, 2, "--resume")) == 2
    assert "no checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"train": 5}')  # a --set below it must not replace it without a word
    assert main(["--config", str(bad), "--set", f"train.run_dir={tmp_path / 'r'}"]) == 2
    assert "train: expected a JSON object" in capsys.readouterr().err
    for empty in ("", "."):  # would train into the current folder (the repository's checkpoints/)
        assert main(args(tmp_path / "r", features, 2, "--set", f"train.run_dir={empty}")) == 2
        assert "name a folder for the run" in capsys.readouterr().err


def test_batch_order_depends_only_on_seed_and_step():
    frames = list(range(100, 130))
    full = list(StepBatches(frames, 4, seed=3, start=0, steps=20))
    assert list(StepBatches(frames, 4, seed=3, start=12, steps=20)) == full[12:]
    ranks = [list(StepBatches(frames, 2, 3, 0, 20, rank=r, world_size=2)) for r in (0, 1)]
    assert [a + b for a, b in zip(*ranks)] == full
    epoch = [i for batch in full[:7] for i in batch]
    assert len(set(epoch)) == 28  # 7 batches of 4 per epoch, no clip twice


def test_data_parallel_with_two_gloo_processes(tmp_path, features):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "metatts", "train",
           *args(tmp_path / "ddp", features, 2, "--set", "train.batch_size=2")]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(tmp_path / "ddp")
    assert ckpt.step == 2 and ckpt.config.train.batch_size == 2
    assert [r["step"] for r in read_log(tmp_path / "ddp" / "log.jsonl")
            if r["split"] == "train"] == [1, 2]


def test_resume_may_change_the_objective_but_not_the_model(tmp_path, features, capsys):
    assert main(args(tmp_path / "run", features, 1)) == 0
    capsys.readouterr()
    # continuing with speaker consistency switched on: loss weights and novel voices may change
    assert main(args(tmp_path / "run", features, 2, "--resume", "--set", "loss.consistency=1",
                     "--set", "loss.novel=1", "--set", "model.novel_voices=0.5")) == 0
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.step == 2 and ckpt.config.loss.consistency == 1.0
    capsys.readouterr()
    assert main(args(tmp_path / "run", features, 3, "--resume", "--set", "model.heads=4")) == 2
    assert "heads" in capsys.readouterr().err
