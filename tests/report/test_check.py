"""`regbench check`: a study's claims against a shrunk run of it, through the real CLI.

One shrunk label_corruption sweep (label noise 0 and 1, seed 0, two epochs on 100 signals) is trained once; its
claims are checked as the study states them (two epochs fit nothing: fits_every_level does not hold), with claims
overridden so that every one holds, and with claims of every kind whose verdict the test works out from results.csv.
A shrunk random_search and a shrunk adam_l2_vs_adamw_tuned are checked on their own layouts (slow: `make test-slow`).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from helpers import REPO, one_line_error, run_cli

from regbench.config import run_id
from regbench.report import claims as claims_module
from regbench.report.claims import KINDS, check, study_claims

STUDIES = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
SHRUNK = ["seed=0", "trainer.max_epochs=2", "dataset.n_train=100", "logger=none"]
ONE_EPOCH = ["trainer.max_epochs=1", "dataset.n_train=100", "logger=none"]


@pytest.fixture(scope="module")
def shrunk(tmp_path_factory, _isolated_env):
    """A shrunk label_corruption sweep and, beside it, a single run that is no named study (trained at once)."""
    dirs = train(tmp_path_factory.mktemp("check"), {
        "sweep": ["-m", "experiment=label_corruption", "dataset.label_noise=0.0,1.0", *SHRUNK],
        "single": ["debug=tiny", *ONE_EPOCH]})
    return {**dirs, "runs": pd.read_csv(dirs["sweep"] / "results.csv")}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory, _isolated_env):
    """A shrunk search (trials, then the best one and the default replicated) and a shrunk tuned study."""
    return train(tmp_path_factory.mktemp("layouts"), {
        "search": ["-m", "experiment=random_search", "search.n_trials=3", "search.batch=3", "search.replicate_seeds=[1]",
                   *ONE_EPOCH],
        "tuned": ["-m", "experiment=adam_l2_vs_adamw_tuned", "tune.budget=1", "tune.seeds=[100]", "seed=0", *ONE_EPOCH]})


def train(root, commands: dict[str, list[str]]) -> dict:
    """`regbench run` each command into root/<name> (a sweep's or a run's dir), all at once."""
    dirs = {name: root / name for name in commands}
    procs = [subprocess.Popen([sys.executable, "-m", "regbench", "run", *args,
                               f"hydra.{'sweep' if '-m' in args else 'run'}.dir={dirs[name]}"],
                              cwd=REPO, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, args in commands.items()]
    for p in procs:
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, output[-3000:]
    return dirs


def means(runs: pd.DataFrame, metric: str) -> dict[float, float]:
    """results.csv's mean of ``metric`` per label-noise level."""
    return runs.groupby("dataset.label_noise")[metric].mean().to_dict()


def test_check_prints_every_claim_and_exits_1_when_one_is_not_held(shrunk):
    out = run_cli("check", str(shrunk["sweep"]))
    assert out.returncode == 1, out.stderr
    stated = [c["name"] for c in study_claims("label_corruption")]
    for name in stated:
        assert f"  {name}: " in out.stdout
    # two epochs fit nothing: the train accuracies behind the verdict are results.csv's
    train = means(shrunk["runs"], "train_acc")
    assert max(train.values()) < 0.99
    assert "NOT HELD  fits_every_level" in out.stdout
    for noise, acc in train.items():
        assert f"label_noise={noise:g} {100 * acc:.1f}% (n 1)" in out.stdout
    assert out.stdout.strip().splitlines()[-1].startswith(f"{sum('held    ' in line for line in out.stdout.splitlines())} of "
                                                          f"{len(stated)} claims held; not held: ")


def test_check_exits_0_when_every_claim_holds(shrunk):
    test = means(shrunk["runs"], "test_acc")
    rising = test[1.0] - test[0.0]
    # the study's claims, loosened until two epochs satisfy them; the one about time to fit (nothing fits in two
    # epochs) asked of test accuracy instead, with a margin no accuracy misses
    out = run_cli("check", str(shrunk["sweep"]), "claims.0.value=0", f"claims.1.tolerance={max(rising, 0) + 0.01}",
                  f"claims.2.value={test[1.0] + 0.01}", "claims.3.metric=test_acc", "+claims.3.margin=-1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "NOT HELD" not in out.stdout and out.stdout.strip().endswith("4 of 4 claims held")
    assert f"0: {100 * test[0.0]:.1f}%, 1: {100 * test[1.0]:.1f}%" in out.stdout


CLAIMS = [  # every kind, with the verdict results.csv gives it: (claim, runs → held)
    ({"kind": "at_least", "metric": "test_acc", "value": 0.05, "where": {"dataset.label_noise": 0.0}},
     lambda r: means(r, "test_acc")[0.0] >= 0.05),
    ({"kind": "at_most", "metric": "train_acc", "value": 0.5}, lambda r: max(means(r, "train_acc").values()) <= 0.5),
    ({"kind": "monotone", "metric": "test_acc", "factor": "dataset.label_noise", "direction": "increasing"},
     lambda r: means(r, "test_acc")[1.0] >= means(r, "test_acc")[0.0]),
    ({"kind": "monotone", "metric": "test_acc", "factor": "dataset.label_noise", "direction": "decreasing"},
     lambda r: means(r, "test_acc")[1.0] <= means(r, "test_acc")[0.0]),
    ({"kind": "greater", "metric": "val_loss", "a": {"dataset.label_noise": 1.0}, "b": {"dataset.label_noise": 0.0}},
     lambda r: means(r, "val_loss")[1.0] > means(r, "val_loss")[0.0]),
    ({"kind": "greater", "metric": "test_acc", "margin": -1, "a": {"dataset.label_noise": [0.0, 1.0], "pick": "min"},
      "b": {"dataset.label_noise": [0.0, 1.0], "pick": "max"}}, lambda r: True),
    ({"kind": "close", "metric": "train_acc", "tolerance": 0.02, "a": {"dataset.label_noise": 0.0},
      "b": {"dataset.label_noise": 1.0}}, lambda r: abs(means(r, "train_acc")[0.0] - means(r, "train_acc")[1.0]) <= 0.02),
    ({"kind": "wider", "metric": "test_acc", "within": 0.01, "a": {"dataset.label_noise": 0.0},
      "b": {"dataset.label_noise": 1.0}}, lambda r: False),  # one configuration each: 1 against 1 is not wider
    ({"kind": "at_most", "metric": "diverged", "value": 0.0}, lambda r: not (r["status"] == "diverged").any()),
    ({"kind": "greater", "metric": "steps_to_fit", "a": {"dataset.label_noise": 1.0}, "b": {"dataset.label_noise": 0.0}},
     lambda r: False),  # nothing fits in two epochs: no numbers, not held
    ({"kind": "most_important", "factor": "optimizer.lr"}, lambda r: False),  # not a search
]


def test_every_kind_is_exercised():
    assert {c["kind"] for c, _ in CLAIMS} == set(KINDS)


@pytest.mark.parametrize("claim, expected", CLAIMS, ids=[f"{c['kind']}-{i}" for i, (c, _) in enumerate(CLAIMS)])
def test_each_kind_gives_the_verdict_of_the_results_table(shrunk, claim, expected):
    flow = "{" + ", ".join(f"{k}: {_flow(v)}" for k, v in {"name": "it", **claim}.items()) + "}"
    checked = check(shrunk["sweep"], [f"claims=[{flow}]"])
    verdict = checked.verdicts[0]
    assert verdict.held == expected(shrunk["runs"]), verdict.numbers
    assert verdict.numbers  # every verdict shows the numbers behind it


def _flow(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_flow(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_flow(x) for x in v) + "]"
    return str(v)


def test_bad_input_is_one_line_and_exit_2(shrunk, tmp_path):
    one_line_error(run_cli("check", str(tmp_path / "nowhere")), "is not a directory")
    one_line_error(run_cli("check", str(tmp_path)), "holds no runs")  # no results yet
    one_line_error(run_cli("check", str(shrunk["single"])), "'default'", "not a named study")
    one_line_error(run_cli("check", str(shrunk["sweep"]), "claims.0.kind=bigger"), "fits_every_level", "bigger")


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_states_well_formed_claims_about_its_own_factors(study):
    from regbench.config import compose

    cfg = compose([f"experiment={study}"], return_hydra_config=True)
    axes = set(cfg.hydra.sweeper.params or {}) | set(cfg.search.space or {})
    for claim in study_claims(study):  # a known kind with its fields (UserError otherwise)
        assert claim.get("says"), f"{study}: claim {claim['name']} says nothing"
        for side in ("where", "a", "b"):
            for key in set(claim.get(side) or {}) - {"pick"}:
                assert key in axes or key == claims_module.ARM, f"{study}: {claim['name']} selects on {key}, not a sweep axis"
        for key in ("factor", "for_each"):
            if claim.get(key) and claim["kind"] != "most_important":
                assert claim[key] in axes, f"{study}: {claim['name']}'s {key} {claim[key]} is not a sweep axis"


@pytest.mark.parametrize("study", STUDIES)
def test_claims_change_no_run_id(study):
    """The claims are not what a run trains: a study's run has the id it had before it stated any."""
    from regbench.config import compose

    cfg = compose([f"experiment={study}"])
    assert cfg.claims
    assert run_id(cfg) == run_id(compose([f"experiment={study}", "~claims"]))


def test_claims_on_the_command_line_change_no_run_dir(tmp_path):
    """Claims given to `regbench run` name no run dir: the same jobs, folders and run ids with and without them."""
    from regbench.validate import check_command

    def jobs(*extra):
        plan = check_command(["experiment=label_corruption", "dataset.label_noise=0.0,1.0", "seed=0",
                              f"hydra.sweep.dir={tmp_path}", *extra], multirun=True)
        return [(job.dirname, run_id(cfg)) for job, cfg in zip(plan.jobs, plan.configs)]

    assert jobs() == jobs("claims=[]") == jobs("~claims")


@pytest.mark.slow
def test_a_search_is_checked_on_its_replication_and_its_study(layouts):
    from regbench.report.search import importances, load

    out = run_cli("check", str(layouts["search"]))
    assert out.returncode in (0, 1), out.stderr
    assert f"against {layouts['search'] / 'replicate'} (2 completed runs)" in out.stdout
    replicate = pd.read_csv(layouts["search"] / "replicate" / "results.csv")
    best = replicate[replicate["optimizer.lr"].notna()]["test_acc"].mean()
    default = replicate[replicate["optimizer.lr"].isna()]["test_acc"].mean()
    assert f"a {100 * best:.1f}% − b {100 * default:.1f}%" in out.stdout
    assert (f"{'held    ' if best > default else 'NOT HELD'}  best_trial_beats_default") in out.stdout
    shares = importances(load(layouts["search"]))
    top = max(shares, key=shares.get)
    assert f"largest: {top} ({shares[top]:.2f})" in out.stdout
    assert (f"{'held    ' if top == 'optimizer.lr' else 'NOT HELD'}  lr_matters_most") in out.stdout


@pytest.mark.slow
def test_a_tuned_study_is_checked_on_its_final_sweep(layouts):
    out, final = run_cli("check", str(layouts["tuned"])), run_cli("check", str(layouts["tuned"] / "final"))
    assert out.stdout == final.stdout and out.returncode == final.returncode
    runs = pd.read_csv(layouts["tuned"] / "final" / "results.csv").groupby("penalty")["test_acc"].mean()
    held = runs["WeightDecay"] - runs["L2"] > -0.02
    assert out.returncode == (0 if held else 1), out.stdout + out.stderr
    assert f"a {100 * runs['WeightDecay']:.1f}% − b {100 * runs['L2']:.1f}%" in out.stdout


@pytest.mark.slow
def test_experiments_build_writes_a_studys_folder_and_the_gallery(shrunk, tmp_path):
    """experiments/build.py on an outputs folder holding the shrunk study: its folder (table, figure, results,
    check's output and verdict) and the gallery, from the real CLI's commands."""
    import json

    (tmp_path / "outputs" / "label_corruption").mkdir(parents=True)
    (tmp_path / "outputs" / "label_corruption" / "multirun").symlink_to(shrunk["sweep"])
    into = tmp_path / "experiments"
    out = subprocess.run([sys.executable, str(REPO / "experiments" / "build.py"), str(tmp_path / "outputs"), "label_corruption",
                          "--into", str(into)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    folder = into / "label_corruption"
    assert {"README.md", "table.md", "results.csv", "check.txt", "verdict.json"} <= {p.name for p in folder.iterdir()}
    assert list(folder.glob("*.png"))
    checked = run_cli("check", str(shrunk["sweep"]))
    record = json.loads((folder / "verdict.json").read_text())
    assert record["held"] == sum(line.startswith("held    ") for line in checked.stdout.splitlines())
    assert (record["held"] == record["claims"]) == (checked.returncode == 0)
    assert len(pd.read_csv(folder / "results.csv")) == len(shrunk["runs"])
    assert f"| {record['held']} of {record['claims']} held |" in (into / "README.md").read_text()
