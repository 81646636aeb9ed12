"""``eqchem train --init`` from a model that lacks some of the data's elements: the body is taken, what depends on
the elements present starts afresh; a different basis or changed shells are refused with one line."""
from __future__ import annotations

import pytest
import torch

from eqchem.basis import BasisLayout
from eqchem.errors import DataError
from eqchem.model.card import ModelCard
from eqchem.model.config import ModelConfig
from eqchem.model.file import save_model
from eqchem.model.hamiltonian import build_model
from eqchem.training.config import TrainConfig
from eqchem.training.module import HamiltonianTask
from eqchem.training.runs import init_from_model

TINY = ModelConfig(hidden="8,4", pair_channels="4,2,2", diag_channels=4)


def _source(tmp_path, elements=(1, 8), basis="sto-3g"):
    torch.manual_seed(1)
    net = build_model(BasisLayout.from_basis(basis, list(elements)), TINY, 4.0, torch.float32)
    path = save_model(tmp_path / "src.pt", net, ModelCard(xc="pbe", basis=basis))
    return net, path


def _task(path, elements, basis="sto-3g"):
    torch.manual_seed(2)
    cfg = TrainConfig.from_dict({"model": TINY.to_dict(), "init_model": str(path), "ema_decay": 0.0})
    layout = BasisLayout.from_basis(basis, list(elements))
    return HamiltonianTask(layout.to_dict(), cfg.to_dict(), 4.0), layout, cfg


def test_a_model_grows_new_elements_on_its_body(tmp_path):
    src, path = _source(tmp_path)
    task, layout, cfg = _task(path, (1, 6, 8))
    fresh_c = task.model.embedding.weight[1].clone()
    line = init_from_model(task, layout, cfg)
    assert "new elements [6]" in line and "taken" in line
    emb = task.model.embedding.weight
    assert torch.equal(emb[0], src.embedding.weight[0]) and torch.equal(emb[2], src.embedding.weight[1])  # H, O
    assert torch.equal(emb[1], fresh_c)  # carbon: as initialized
    body = [n for n, _ in src.named_parameters() if n.startswith("layers.")]
    assert body and all(torch.equal(dict(task.model.named_parameters())[n], dict(src.named_parameters())[n])
                        for n in body)
    src_params = dict(src.named_parameters())
    fresh = [n for n, p in task.model.named_parameters() if n in src_params and p.shape != src_params[n].shape]
    assert fresh  # the element-typed heads and readouts


def test_the_same_layout_takes_everything(tmp_path):
    src, path = _source(tmp_path)
    task, layout, cfg = _task(path, (1, 8))
    assert init_from_model(task, layout, cfg) == f"weights initialized from {path}"
    assert all(torch.equal(p, dict(src.named_parameters())[n]) for n, p in task.model.named_parameters())


@pytest.mark.parametrize("elements, basis", [((1, 6), "sto-3g"), ((1, 8), "6-31g")])
def test_a_model_must_share_the_basis_and_its_elements(tmp_path, elements, basis):
    _, path = _source(tmp_path)
    task, layout, cfg = _task(path, elements, basis)
    with pytest.raises(DataError, match="may only lack elements"):
        init_from_model(task, layout, cfg)
