"""A run and the runs before it: the resolved config it records, the checkpoint ``--resume`` continues (same
config), and the model file ``--init`` starts it from (same network and basis layout)."""
from __future__ import annotations

from pathlib import Path

from ..basis import BasisLayout
from ..errors import DataError
from .config import TrainConfig

RESUMABLE_CHANGES = {"resume", "max_epochs", "max_time_minutes", "devices", "num_nodes", "accelerator",
                     "num_workers", "early_stopping_patience", "cache_mb", "profile"}
"""Training settings a resumed run may change (besides the prediction settings)."""


def changed_keys(old: dict, new: dict, ignore=frozenset()) -> list[str]:
    """Sorted keys whose values differ between two config dicts (a key missing on one side differs)."""
    return sorted(k for k in set(old) | set(new) if k not in ignore and old.get(k) != new.get(k))


def resume_checkpoint(run_dir: Path, cfg: TrainConfig) -> str | None:
    """Newest checkpoint of a run (Lightning's Slurm 'hpc_ckpt_*' saved on the requeue signal, or
    'last.ckpt'); refuses to resume a run whose configuration changed (``cfg`` as train() resolves it)."""
    import yaml

    saved = run_dir / "train_config.yaml"
    if saved.exists():
        old = yaml.safe_load(saved.read_text())
        try:  # keys added to the config since that run take their defaults
            old = TrainConfig.from_dict(old).to_dict()
        except Exception:  # noqa: BLE001 - an unknown or broken saved config: compare as stored
            pass
        # prediction settings may change between runs
        old, new = TrainConfig.training_part(old), TrainConfig.training_part(cfg.to_dict())
        ignore = set(RESUMABLE_CHANGES)
        # train() saves and compares split_by resolved ('auto' -> molecule or structure for this data);
        # an unresolved 'auto' on either side resolves alike on the same data, and a split file makes it unused
        if new.get("split_file") or "auto" in (old.get("split_by"), new.get("split_by")):
            ignore.add("split_by")
        changed = changed_keys(old, new, ignore=ignore)
        if changed:
            raise DataError(f"cannot resume {run_dir}: the training config changed ({', '.join(changed)}); "
                            f"use a new --run-dir or the original settings")
    candidates = list(run_dir.glob("hpc_ckpt_*.ckpt")) + list((run_dir / "checkpoints").glob("last*.ckpt"))
    return str(max(candidates, key=lambda p: p.stat().st_mtime)) if candidates else None


def record_config(run_dir: Path, cfg: TrainConfig) -> None:
    """Write the resolved config to ``run_dir/train_config.yaml`` (what ``--resume`` compares with)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "train_config.yaml").write_text(cfg.dump())


def init_from_model(task, layout: BasisLayout, cfg: TrainConfig) -> str:
    """Start from the weights of the trained model file ``cfg.init_model`` (fine-tuning): the same network
    architecture (its prediction settings do not matter) and basis layout, or a layout that adds elements
    to the source's (same basis, the shared elements' shells unchanged). Then every parameter whose shape is
    unchanged is taken (the body: embeddings of the shared elements, interaction layers, radial networks),
    and what depends on the elements present (their embeddings, the heads' element-typed inputs and
    readouts, the output statistics) starts afresh. Returns one line saying what was taken."""
    import torch

    from ..model.file import read_model_file
    from ..model.hamiltonian import load_portable_state_dict

    src = read_model_file(cfg.init_model)
    changed = changed_keys(src.config.to_dict(), cfg.model.to_dict())
    if changed:
        raise DataError(f"--init model {cfg.init_model} has a different network ({', '.join(changed)})")
    dtype = next(task.model.parameters()).dtype
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in src.state_dict.items()}
    if src.layout.to_dict() == layout.to_dict():
        load_portable_state_dict(task.model, state)
        return f"weights initialized from {cfg.init_model}"
    old, new = src.layout, layout
    if old.basis != new.basis or not set(old.elements) <= set(new.elements) or any(
            tuple(old.shells[z]) != tuple(new.shells[z]) for z in old.elements):
        raise DataError(f"--init model {cfg.init_model} covers a different basis layout ({old.basis}, elements "
                        f"{list(old.elements)}) than this training data ({new.basis}, {list(new.elements)}): "
                        f"an --init model must share the basis and may only lack elements")
    taken, fresh = 0, []
    with torch.no_grad():
        for name, p in task.model.named_parameters():
            v = state.get(name)
            if name == "embedding.weight" and v is not None:  # rows follow the sorted elements
                rows = [new.elements.index(z) for z in old.elements]
                p[rows] = v
                taken += 1
            elif v is not None and tuple(v.shape) == tuple(p.shape):
                p.copy_(v)
                taken += 1
            else:
                fresh.append(name)
    added = sorted(set(new.elements) - set(old.elements))
    return (f"weights initialized from {cfg.init_model} for its elements {list(old.elements)}: {taken} parameter "
            f"tensors taken, {len(fresh)} that depend on the elements present start afresh (new elements {added})")
