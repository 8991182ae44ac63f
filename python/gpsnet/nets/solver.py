"""The solver schedules and the Caffe solver text: the paper's (section 5.1) and the CPU setting's
(docs/nets.md "Schedules"), written once; every committed solver, ``gpsnet train`` and its log read them."""
from __future__ import annotations

from dataclasses import dataclass

SOLVER_HEADER = "# GPSNet solver"   # the first line of every solver the builder writes
SOLVER_TEMPLATE = SOLVER_HEADER + """ ({why}). `caffe train -solver` runs it from the repository root
# (docs/nets.md "The Caffe tool"); scripts/train writes its own with the run folder's paths.
train_net: "{train_net}"
base_lr: {base_lr:g}
{policy}momentum: 0.9
weight_decay: 0.0005
iter_size: 1
max_iter: {max_iter}
display: 20
average_loss: 20
snapshot: {snapshot}
snapshot_prefix: "{snapshot_prefix}"
random_seed: {seed}
{solver_type}"""


@dataclass(frozen=True)
class Schedule:
    """A solver schedule: what ``--solver``, ``--lr`` and ``--lr-policy`` select."""
    solver: str
    base_lr: float
    lr_policy: str

    def argv(self) -> list[str]:
        return ["--solver", self.solver, "--lr", f"{self.base_lr:g}", "--lr-policy", self.lr_policy]


# The paper's schedule (section 5.1), written once: every solver and the training log read it; and the
# CPU setting's, for short runs from random init (the demo, the ablation table, the overfit test, the
# committed small solvers; docs/nets.md "Schedules").
PAPER_SCHEDULE = Schedule("SGD", 0.001, "step")
PAPER_STEP = dict(stepsize=50000, gamma=0.1)
PAPER_MAX_ITER = 100000
CPU_SCHEDULE = Schedule("Adam", 0.002, "poly")
CPU_MAX_ITER = 1600   # the demo's run, and the committed small solvers' length
POLY_POWER = 0.9   # DeepLab-v2's "poly" policy: lr = base_lr (1 - iter / max_iter) ^ power


def learning_rate(it: int, base_lr: float, policy: str, max_iter: int) -> float:
    """The learning rate Caffe's solver uses at iteration ``it`` (policies "step" and "poly")."""
    if policy == "step":
        return base_lr * PAPER_STEP["gamma"] ** (it // PAPER_STEP["stepsize"])
    if policy == "poly":
        return base_lr * (1.0 - it / max_iter) ** POLY_POWER
    raise ValueError(f"lr policy {policy!r}: step or poly")


def solver_text(train_net: str, snapshot_prefix: str, schedule: Schedule = PAPER_SCHEDULE,
                max_iter: int = PAPER_MAX_ITER, snapshot: int | None = None, seed: int = 0) -> str:
    """A Caffe solver for ``schedule``: the paper's (SGD, step) or ``Adam`` (momentum2 0.999) and
    ``poly`` (DeepLab-v2's, power 0.9, down to 0 at ``max_iter``) for short runs from scratch.
    ``snapshot`` defaults to a tenth of the run (the paper's 10000 of 100000)."""
    if schedule.lr_policy == "step":
        policy = 'lr_policy: "step"\n' + "".join(f"{k}: {v:g}\n" for k, v in PAPER_STEP.items())
    elif schedule.lr_policy == "poly":
        policy = f'lr_policy: "poly"\npower: {POLY_POWER}\n'
    else:
        raise ValueError(f"lr policy {schedule.lr_policy!r}: step or poly")
    if schedule.solver not in ("SGD", "Adam"):
        raise ValueError(f"solver type {schedule.solver!r}: SGD or Adam")
    why = ("the paper's schedule, section 5.1" if schedule == PAPER_SCHEDULE else
           "the CPU schedule of the small setting" if schedule == CPU_SCHEDULE else "a custom schedule")
    return SOLVER_TEMPLATE.format(
        why=why, train_net=train_net, base_lr=schedule.base_lr, policy=policy, max_iter=max_iter,
        snapshot=max(1, max_iter // 10) if snapshot is None else snapshot, snapshot_prefix=snapshot_prefix,
        seed=seed, solver_type='type: "Adam"\nmomentum2: 0.999\n' if schedule.solver == "Adam" else "")
