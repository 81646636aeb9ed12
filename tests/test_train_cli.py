"""`eqchem train` as a new user meets it: one-molecule data trains by default (split by structure, said
in one line), plain per-epoch lines in batch logs, why it stopped, the best / last / shipped metrics named,
the config printed only on request, and the charges / spins the model was trained on recorded."""
from __future__ import annotations

import re

import pytest
import yaml

import eqchem

from .conftest import generate_water_set

TINY = "model: {hidden: '16,8,4', pair_channels: '4,2,2', diag_channels: 4}\n"


@pytest.fixture(scope="module")
def water20(tmp_path_factory):
    """21 structures of one molecule (water + 20 jittered frames) and a tiny-model config."""
    d = tmp_path_factory.mktemp("train_cli")
    generate_water_set(d, samples=20, seed=3)
    (d / "tiny.yaml").write_text(TINY)
    return d


def test_one_molecule_trains_by_default_with_plain_epoch_lines(water20, run_cli):
    d = water20
    code, out = run_cli("train", d / "water.h5", "--out", d / "m.pt", "--max-epochs", "5", "--config", d / "tiny.yaml")
    assert code == 0, out
    lines = out.splitlines()
    notice = [ln for ln in lines if ln.startswith("data holds one molecule")]
    assert len(notice) == 1 and "21 structures" in notice[0] and "--split-by structure" in notice[0], out
    assert "split_by:" not in out and "batch_size:" not in out  # no config dump unless asked for
    assert any("train_config.yaml" in ln for ln in lines)
    epoch_lines = [ln for ln in lines if re.match(r"epoch \d+/5  train_loss \S+  val_mae_uEh \S+  best ", ln)]
    assert [int(ln.split()[1].split("/")[0]) for ln in epoch_lines] == [1, 2, 3, 4, 5], out
    assert "stopped: reached --max-epochs 5" in lines, out
    for noise in ("GPU available", "TPU available", "Tip:", "LOCAL_RANK", "Trainer.fit` stopped", "LeafSpec"):
        assert noise not in out, noise
    best = next(ln for ln in lines if ln.strip().startswith("best epoch "))
    assert "val_mae_uEh" in best
    assert any(ln.strip().startswith("last epoch 5: val_mae_uEh") for ln in lines), out
    assert any(ln.strip().startswith("shipped model (best checkpoint + final readout refit): val_mae_uEh")
               for ln in lines), out
    meta = eqchem.load_model(d / "m.pt").metadata
    assert meta["charges"] == [0] and meta["spins"] == [0]
    assert meta["train_config"]["split_by"] == "structure"  # the resolved value, not 'auto'
    assert yaml.safe_load((d / "m_run" / "train_config.yaml").read_text())["split_by"] == "structure"
    m = meta["metrics"]
    assert {"val_mae_uEh", "val_mae_diag_uEh", "val_mae_offd_uEh", "best_epoch", "best_val_mae_uEh",
            "last_val_mae_uEh"} <= set(m)
    assert f"best epoch {m['best_epoch']}: val_mae_uEh {m['best_val_mae_uEh']:.1f}" in best
    assert meta["stop_reason"] == "reached --max-epochs 5"


def test_show_config_prints_the_resolved_config(water20, run_cli):
    d = water20
    code, out = run_cli("train", d / "water.h5", "--out", d / "s.pt", "--max-epochs", "1", "--config", d / "tiny.yaml",
                        "--show-config")
    assert code == 0, out
    assert "resolved config:" in out and "split_by: structure" in out and "max_epochs: 1" in out


def test_explicit_split_by_molecule_of_one_molecule_is_one_clear_error(water20, run_cli):
    d = water20
    code, out = run_cli("train", d / "water.h5", "--out", d / "x.pt", "--split-by", "molecule")
    assert code == 2, out
    lines = out.strip().splitlines()
    assert len(lines) == 1 and "--split-by structure" in out and "water.h5" in out and "one molecule" in out, out
    assert not (d / "x.pt").exists()


def test_auto_split_and_resume_of_runs_saved_by_molecule(tmp_path):
    """'auto' is by molecule for two or more molecules; a run saved with split_by: molecule resumes under
    the default (the resolved value is compared), a real change of the split mode is refused."""
    from eqchem.errors import DataError
    from eqchem.training.config import TrainConfig
    from eqchem.training.data import resolve_split_by, split_keys
    from eqchem.training.train import resume_checkpoint

    ident = {"a0": "smiles:O", "a1": "smiles:O", "b0": "smiles:C", "c0": "smiles:N"}
    assert TrainConfig().split_by == "auto"
    assert resolve_split_by(ident, "auto") == "molecule"
    assert resolve_split_by({"a0": "smiles:O", "a1": "smiles:O"}, "auto") == "structure"
    split = split_keys(ident, 0.34, by="auto")
    assert {"a0", "a1"} <= set(split["train"]) or {"a0", "a1"} <= set(split["val"])
    (tmp_path / "train_config.yaml").write_text(TrainConfig.load(None, {"split_by": "molecule"}).dump())
    assert resume_checkpoint(tmp_path, TrainConfig.load(None, {"split_by": "molecule", "resume": True})) is None
    assert resume_checkpoint(tmp_path, TrainConfig.load(None, {"resume": True})) is None  # unresolved auto
    with pytest.raises(DataError, match="split_by"):
        resume_checkpoint(tmp_path, TrainConfig.load(None, {"split_by": "structure", "resume": True}))
