"""The real command line in a subprocess: help, a run, and bad input refused before anything is written."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO, read_result, run_cli

FAST = ["debug=tiny"]


def test_help_is_instant_and_imports_no_torch():
    code = "import sys; from regbench.cli import main; main(['--help']); assert 'torch' not in sys.modules, 'torch imported'"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "regbench run" in out.stdout and "report" in out.stdout


def test_run_writes_a_result_and_prints_it(tmp_path):
    out = run_cli("run", "model=mlp", *FAST, f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "test" in out.stdout and "completed" in out.stdout
    result = read_result(tmp_path / "run")
    assert result["status"] == "completed" and result["epochs_run"] == 1
    assert (tmp_path / "run" / "regbench.log").read_text().count("epoch 1/1") == 1


def test_run_flushes_subnormal_floats_in_every_cpu_thread(tmp_path):
    """`regbench run` sets flush-to-zero before torch starts its threads, so they inherit it: after a run, an
    op split over all threads gives zeros where IEEE arithmetic gives subnormals (1e-40) in a plain
    interpreter. (Set after the threads exist, it would reach the calling thread only: half the zeros.)"""
    product = "(torch.full((1 << 20,), 1e-30) * 1e-10)"
    plain = subprocess.run([sys.executable, "-c", f"import torch; print(int({product}.count_nonzero()))"],
                           capture_output=True, text=True)
    if plain.stdout.strip() != str(1 << 20):
        pytest.skip("this machine already flushes subnormals")
    code = ("import sys, torch; from regbench.cli import main; torch.set_num_threads(2); "
            f"assert main(sys.argv[1:]) == 0; print(int({product}.count_nonzero()))")
    out = subprocess.run([sys.executable, "-c", code, "run", "model=mlp", *FAST, f"hydra.run.dir={tmp_path}/run"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0"


def test_default_run_dir_is_named_by_overrides_and_reruns_are_not_retrained(tmp_path):
    args = ("run", "model=mlp", *FAST)
    first = run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "outputs" / "default" / "runs").iterdir()
    assert "model=mlp" in run_dir.name and "logger" not in run_dir.name
    written = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (run_dir / "result.json", run_dir / "checkpoints" / "last.pt")}
    again = run_cli(*args, cwd=tmp_path)
    assert again.returncode == 0 and "not retrained" in again.stdout + again.stderr
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in written} == written  # nothing retrained or rewritten
    assert f"{read_result(run_dir)['test_acc']:.2%}" in again.stdout  # the rerun prints the stored result


BAD = [
    (["model=nope"], "unknown model=nope; available:"),
    (["optimizer.lr=-1"], "optimizer.lr=-1"),
    (["optimizer.lr=abc"], "optimizer.lr='abc' must be a number"),
    (["trainer.max_epochs=0"], "trainer.max_epochs=0 is out of range"),
    (["trainer.max_epochs=1.5"], "trainer.max_epochs=1.5 must be a whole number"),
    (["regularizer=[dropout]", "regularizer.dropout.p=1.5"], "regularizer.dropout.p=1.5 is out of range [0, 1)"),
    (["trainer.no_such_key=1"], "trainer.no_such_key"),
    (["dataset.label_noise=2"], "dataset.label_noise=2"),
    (["dataset.input_corruption=blur"], "dataset.input_corruption='blur' is not one of"),
    (["trainer.device=tpu"], "trainer.device='tpu'"),
    (["seed=-1"], "seed=-1"),
    (["optimizer.weight_decay=0.1"], "weight_decay"),
    (["dataset=cifar10", "model=cnn"], "cifar10: no data in"),
    (["-m", "seed=0,1", "optimizer.lr=0.1,-1"], "optimizer.lr=-1"),
    (["--bogus"], "unknown flag"),
    (["-m", "seed=0,1", "--cfg", "job"], "--multirun and --cfg cannot be combined"),  # were Hydra's tracebacks
    (["--cfg", "job", "-i"], "--cfg and --info cannot be combined"),
    (["--resolve"], "--resolve goes with --cfg"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(args, message, tmp_path):
    out = run_cli("run", *args, "logger=none", f"hydra.run.dir={tmp_path}/run", f"hydra.sweep.dir={tmp_path}/sweep",
                  cwd=tmp_path)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("regbench: error: "), out.stderr
    assert message in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no run dir, no outputs/


TYPOS = [["model=nope"], ["trainer.no_such_key=1"], ["trainer.max_epochs=0"], ["name=a/b"], ["seed=-1"],
         ["-m", "seed=0,1", "stack=0"]]


@pytest.mark.parametrize("args", TYPOS, ids=[" ".join(a) for a in TYPOS])
def test_a_typo_is_refused_before_torch_is_imported(args, tmp_path):
    """Hydra's composition and the checks that need no torch (name, seed, stack, the trainer's keys) come before
    the builders' checks, whose torch import took 3 s of a 3.5 s refusal on a slow 2-core VM."""
    code = ("import sys; from regbench.cli import main\ntry: main(sys.argv[1:])\n"
            "except SystemExit as e: print(e.code, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, "run", *args, f"hydra.run.dir={tmp_path}/run",
                          f"hydra.sweep.dir={tmp_path}/sweep"], capture_output=True, text=True, cwd=tmp_path)
    assert out.stdout.split() == ["2", "False"], (out.stdout, out.stderr)
    assert out.stderr.startswith("regbench: error: ") and out.stderr.count("\n") == 1, out.stderr
    assert list(tmp_path.iterdir()) == []


def test_bad_input_leaves_an_existing_run_untouched(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli("run", "model=mlp", *FAST, f"hydra.run.dir={run_dir}", cwd=tmp_path).returncode == 0
    before = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    out = run_cli("run", "model=mlp", *FAST, "optimizer.lr=0", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert out.returncode == 2
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == before


def test_unknown_command_exits_2():
    out = run_cli("train")
    assert out.returncode == 2 and "unknown command" in out.stderr


def test_config_inspection_flags_pass_through_to_hydra():
    out = run_cli("run", "--cfg", "job", "model=mlp")
    assert out.returncode == 0 and "_target_: regbench.models.mlp.MLP" in out.stdout
    resolved = run_cli("run", "--cfg", "job", "--resolve", "model=mlp")
    assert resolved.returncode == 0 and "_target_: regbench.models.mlp.MLP" in resolved.stdout
    helped = run_cli("run", "-m", "--cfg", "job", "--help")  # a help flag prints, whatever comes with it
    assert helped.returncode == 0 and "== Configuration groups ==" in helped.stdout


def test_version_is_the_release_and_results_carry_it(tmp_path):
    import regbench
    from helpers import TINY

    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"regbench {regbench.__version__}" == "regbench 0.2.0"
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"## {regbench.__version__} " in changelog  # the release says what changed
    assert run_cli("run", *TINY, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path).returncode == 0
    assert read_result(tmp_path / "run")["regbench_version"] == "0.2.0"
