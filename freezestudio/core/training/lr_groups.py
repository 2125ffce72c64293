"""Per-layer learning-rate multipliers, exactly: one Keras optimizer per group.

A multiplier `m` scales a weight's *step* (docs/architecture.md, Plan file). Keras has one
learning rate per optimizer, so the engine builds one optimizer per group of variables
that share a multiplier (and, under a schedule, the stage they started training in),
each built on exactly its variables, with the run's learning rate (or schedule) times
`m`. Why this and not something cheaper to write:

- scaling the gradient is exact for plain SGD only: Adam, AdamW and RMSprop divide the
  gradient by its own running magnitude, so a scaled gradient gives the same step;
- scaling the update after the optimizer has applied it needs a copy of every variable
  per step;
- separate optimizers are the same mathematics as one optimizer with per-variable rates:
  all their state (moments, velocities, momentum buffers) is per variable, and each
  one's `iterations` (Adam's bias correction) advances once per step. They cost nothing
  per step beyond one `apply` call each.

Weight decay (AdamW) is per group too: Keras decays `var -= var * weight_decay * lr`
with the group's rate, so the multiplier scales the whole step, decay included. A
variable that receives no gradient is in no group, so no optimizer (and no decay) sees it.

Each weight's multiplier comes from `core/edits/fine_tuning.resolve_multipliers`.
"""

from __future__ import annotations

from dataclasses import dataclass

from freezestudio.core.errors import UserError


@dataclass
class OptimizerGroup:
    """One optimizer of a run.

    Attributes:
        multiplier: of the run's learning rate.
        cohort: the stage index its variables started training in (0: from epoch 1);
            variables of one cohort share their optimizer's `iterations`.
        indices: into the step's variables.
        optimizer: the Keras optimizer, built on exactly those variables.
    """

    multiplier: float
    cohort: int
    indices: list
    optimizer: object = None

    @property
    def key(self) -> tuple:
        return self.multiplier, self.cohort


def idle_multiplier_note(document, multipliers: dict, receiving_ids: set) -> str:
    """A note naming the weights with a multiplier other than 1 that receive no gradient
    (the multiplier changes nothing for them), or ""."""
    idle = [w.id for w in document.weights if w.freezable and multipliers.get(w.id, 1.0) != 1.0
            and w.id not in receiving_ids]
    if not idle:
        return ""
    few = ", ".join(idle[:3]) + (f" and {len(idle) - 3} more" if len(idle) > 3 else "")
    return (f"learning-rate multipliers on {len(idle)} weight(s) that receive no gradient "
            f"change nothing: {few}")


def plan_groups(multipliers: list, cohorts: list | None = None) -> list:
    """Groups (without optimizers) for variables with these multipliers (and cohorts),
    ordered by first appearance."""
    groups: dict = {}
    for index, multiplier in enumerate(multipliers):
        key = (float(multiplier), cohorts[index] if cohorts else 0)
        groups.setdefault(key, OptimizerGroup(*key, []))
        groups[key].indices.append(index)
    return list(groups.values())


def build_optimizers(groups: list, variables: list, make, loss_scale: bool = False) -> None:
    """Gives every group a fresh optimizer built on its variables.

    Args:
        make: `group -> optimizer` (the run's optimizer, learning rate scaled).
        loss_scale: wrap it in a LossScaleOptimizer (one group only).

    Raises:
        UserError: several groups under dynamic loss scaling.
    """
    if loss_scale and len(groups) > 1:
        raise UserError("learning-rate multipliers and schedules cannot be combined with "
                        "float16 loss scaling (use bfloat16 or float32)")
    for group in groups:
        optimizer = make(group)
        if loss_scale:
            import keras

            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build([variables[i] for i in group.indices])
        group.optimizer = optimizer


def carry_optimizers(groups: list, variables: list, previous: list,
                     previous_variables: list, make) -> None:
    """Gives every group of a new stage its optimizer, keeping the state of variables
    that were already training.

    A group whose (multiplier, cohort) existed before on a superset of its variables
    keeps that optimizer object (a frozen variable simply stops being passed to it). Any
    other group gets a fresh optimizer built on its variables (`make(group)`); for the
    variables that trained before (their multiplier changed), their slot variables
    (moments, velocities, momentum) and their cohort's `iterations` are copied into it.
    Slot variables are matched by name: Keras names them after the model variable's
    path and the slot kind (`add_variable_from_reference`).

    Raises:
        UserError: two trained variables share a path, so their slots cannot be told
            apart.
    """
    holder = {id(previous_variables[i]): group for group in previous for i in group.indices}
    for group in groups:
        members = [variables[i] for i in group.indices]
        keep = next((old for old in previous if old.key == group.key and
                     {id(v) for v in members} <= {id(previous_variables[i])
                                                  for i in old.indices}), None)
        if keep is not None:
            group.optimizer = keep.optimizer
            continue
        group.optimizer = make(group)
        group.optimizer.build(members)
        sources = {id(holder[id(v)]): holder[id(v)] for v in members if id(v) in holder}
        if sources:
            _copy_state(group.optimizer, [s.optimizer for s in sources.values()])


def _slots(optimizer) -> dict:
    fixed = {id(optimizer.iterations)}
    rate = getattr(optimizer, "_learning_rate", None)
    slots: dict = {}
    for variable in optimizer.variables:
        if id(variable) in fixed or variable is rate:
            continue
        if variable.name in slots:
            raise UserError(f"a schedule cannot keep the optimizer state of weights that "
                            f"share the variable path behind '{variable.name}'")
        slots[variable.name] = variable
    return slots


def _copy_state(optimizer, sources: list) -> None:
    old: dict = {}
    for source in sources:
        old.update(_slots(source))
    for name, slot in _slots(optimizer).items():
        if name in old:
            slot.assign(old[name])
    optimizer.iterations.assign(sources[0].iterations)  # one cohort: the same count
