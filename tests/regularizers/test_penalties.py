"""L2 and weight decay: the same update under plain SGD, different ones under Adam; L1 makes weights sparse.

Each comparison trains through the real loop (``train``), so the hooks run exactly as in a run:
penalty → backward → before_step → step.
"""

from __future__ import annotations

import pytest
import torch
from helpers import tiny

from regbench import checkpoint
from regbench.train import train

LAM = 0.01


def trained_weights(tmp_path, *overrides) -> dict[str, torch.Tensor]:
    run_dir = tmp_path / "_".join(o.replace("/", "_") for o in overrides)
    result = train(tiny("model=mlp", "trainer.max_epochs=3", "trainer.early_stopping.patience=null", *overrides), run_dir)
    assert result["status"] == "completed"
    return checkpoint.load(run_dir / "checkpoints" / "last.pt")["model"]


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def weights_pair(tmp_path, optimizer: str):
    l2 = trained_weights(tmp_path, optimizer, "regularizer=[l2]", f"regularizer.l2.strength={LAM}")
    wd = trained_weights(tmp_path, optimizer, "regularizer=[weight_decay]", f"regularizer.weight_decay.strength={LAM}")
    none = trained_weights(tmp_path, optimizer)
    return l2, wd, none


def test_l2_equals_weight_decay_under_plain_sgd(tmp_path):
    # w − η(∇L + λw) = (1 − ηλ)w − η∇L; momentum 0 (sgd.yaml's default): with momentum they would differ.
    l2, wd, none = weights_pair(tmp_path, "optimizer=sgd")
    effect = max_diff(l2, none)
    assert effect > 1e-4, "λ must change the weights for the comparison to mean anything"
    assert max_diff(l2, wd) < 1e-3 * effect  # equal up to float rounding


def test_l2_differs_from_weight_decay_under_adam(tmp_path):
    # Adam divides the L2 gradient λw by its adaptive scale; the decoupled decay (AdamW) is not divided.
    l2, wd, none = weights_pair(tmp_path, "optimizer=adam")
    assert max_diff(l2, wd) > 0.1 * max(max_diff(l2, none), max_diff(wd, none))


def test_l1_drives_more_weights_to_zero_than_l2(tmp_path):
    near_zero = {}
    for reg in ("l1", "l2"):
        weights = trained_weights(tmp_path, "optimizer=adam", f"regularizer=[{reg}]", f"regularizer.{reg}.strength=1e-3",
                                  "dataset.n_train=500", "trainer.max_epochs=20")
        w = torch.cat([v.flatten() for v in weights.values() if v.ndim >= 2])
        near_zero[reg] = (w.abs() < 1e-3).float().mean().item()
    # Measured: 30% of the weights under 1e-3 with L1, 4% with L2.
    assert near_zero["l1"] > 0.15 and near_zero["l1"] > 3 * near_zero["l2"], near_zero


def test_biases_are_not_penalized(tmp_path):
    from helpers import compose

    from regbench import build

    cfg = compose("model=mlp", "regularizer=[l1,l2,weight_decay]")
    regs = build.build_regularizers(cfg.regularizer)
    model = build.build_model(cfg.model, (1, 40), 10, regs)
    for reg in regs:
        reg.setup(model, input_shape=(1, 40), num_classes=10)
        assert reg.covered == ["hidden.0.0.weight", "hidden.1.0.weight", "classifier.weight"]


@pytest.mark.parametrize("exclude_bias_and_norm", [True, False])
def test_weight_decay_with_adam_is_torch_adamw_step_for_step(exclude_bias_and_norm):
    """penalties.WeightDecay claims optimizer=adam + regularizer=[weight_decay] is AdamW: check it against
    torch.optim.AdamW, with the model, optimizer and regularizer from regbench's builders and the hooks in
    train.train_epoch's order. AdamW decays every tensor it is given, so the excluded ones (biases, norm
    gains) go in a group with weight_decay=0."""
    import copy

    import torch.nn.functional as F
    from helpers import compose

    from regbench import build

    lam = 0.1  # large, so that decay moves the weights far more than the tolerance
    cfg = compose("model=mlp", "model.norm=layer", "optimizer=adam", "regularizer=[weight_decay]",
                  f"regularizer.weight_decay.strength={lam}",
                  f"regularizer.weight_decay.exclude_bias_and_norm={str(exclude_bias_and_norm).lower()}")
    shape, classes = tuple(cfg.dataset.input_shape), cfg.dataset.num_classes
    regs = build.build_regularizers(cfg.regularizer)
    torch.manual_seed(0)
    model = build.build_model(cfg.model, shape, classes, regs)
    for reg in regs:
        reg.setup(model, input_shape=shape, num_classes=classes)
    (wd,) = regs
    reference, undecayed = copy.deepcopy(model), copy.deepcopy(model)
    optimizer = build.build_optimizer(cfg.optimizer, model)
    assert type(optimizer) is torch.optim.Adam

    decayed_names = set(wd.covered)
    assert any(n not in decayed_names for n, _ in model.named_parameters()) == exclude_bias_and_norm
    groups = [{"params": [p for n, p in reference.named_parameters() if n in decayed_names], "weight_decay": lam},
              {"params": [p for n, p in reference.named_parameters() if n not in decayed_names], "weight_decay": 0.0}]
    adam = dict(lr=cfg.optimizer.lr, betas=tuple(cfg.optimizer.betas), eps=cfg.optimizer.eps)
    adamw = torch.optim.AdamW([g for g in groups if g["params"]], **adam)
    plain = torch.optim.Adam(undecayed.parameters(), **adam)

    gen = torch.Generator().manual_seed(1)
    for _ in range(10):
        x, y = torch.randn(32, *shape, generator=gen), torch.randint(classes, (32,), generator=gen)
        # regbench's step, hooks in train_epoch's order
        xb, yb = x, y
        for reg in regs:
            xb, yb = reg.transform_batch(xb, yb)
        total = F.cross_entropy(model(xb), yb)
        for reg in regs:
            term = reg.penalty(model)
            total = total if term is None else total + term
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        for reg in regs:
            reg.after_backward(model)
        for reg in regs:
            reg.before_step(model, optimizer)
        optimizer.step()
        for reg in regs:
            reg.after_step(model)
        # the same batch through torch's AdamW, and through Adam without any decay
        for net, opt in ((reference, adamw), (undecayed, plain)):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x), y).backward()
            opt.step()

    ours, theirs, free = (dict(m.named_parameters()) for m in (model, reference, undecayed))
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], msg=lambda m, name=name: f"{name}: {m}")
    moved = max((ours[n] - free[n]).abs().max().item() for n in decayed_names)
    assert moved > 1e-3, "the decay must move the weights, or the comparison says nothing"
