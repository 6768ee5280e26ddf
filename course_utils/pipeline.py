"""Pipeline schedules and timelines: check a schedule, measure its bubble and memory, draw it.

    from course_utils.pipeline import Op, validate, problems, bubble_fraction, peak_in_flight, Timeline, draw
    schedule = [Op(0, 0, "F", 0), Op(1, 1, "F", 0), Op(2, 1, "B", 0), Op(3, 0, "B", 0)]  # p = 2, m = 1
    validate(schedule, p=2, m=1)      # raises ValueError naming every broken rule; returns the sorted ops
    bubble_fraction(schedule, p=2)    # 0.5 == (p-1)/(m+p-1)
    peak_in_flight(schedule, p=2)     # [1, 1]: micro-batches whose activations each stage holds at most

A **schedule** is a list of ``Op(tick, stage, op, mb, chunk=0)`` (plain 4- or 5-tuples work too): at
``tick`` pipeline ``stage`` starts ``op`` for micro-batch ``mb``. ``op`` is "F" (forward), "B"
(backward; the whole backward, or only the input gradient when the schedule also has "W" ops) or
"W" (weight gradient, zero-bubble schedules). ``chunk`` is the model chunk for interleaved schedules:
with ``v`` chunks per stage the model has ``p·v`` virtual stages and chunk ``c`` of stage ``s`` is
virtual stage ``c·p + s`` (Megatron's looping placement). Each op lasts ``cost[op]`` ticks
(default 1 each). Communication is free in a schedule.

A **Timeline** holds what real processes did: one ``Interval(stage, start, end, op, mb, chunk)`` per
forward or backward, in seconds. ``Timeline.wrap`` records them around a PyTorch stage module with two
tiny autograd functions, using ``time.perf_counter`` (on Linux one clock for all processes of a
machine, so timelines of several ranks line up). The measures and ``draw`` take either.
"""
from __future__ import annotations

import time
from collections import defaultdict
from typing import NamedTuple

OPS = ("F", "B", "W")
COLORS = {"F": "#4C72B0", "B": "#55A868", "W": "#DD8452"}


class Op(NamedTuple):
    tick: float
    stage: int
    op: str
    mb: int
    chunk: int = 0


class Interval(NamedTuple):
    stage: int
    start: float
    end: float
    op: str
    mb: int
    chunk: int = 0


def _cost(cost: dict | None) -> dict:
    return {**{o: 1 for o in OPS}, **(cost or {})}


def intervals(obj, cost: dict | None = None) -> list[Interval]:
    """The busy intervals of a Timeline, or of a schedule with each op lasting ``cost[op]`` ticks."""
    if isinstance(obj, Timeline):
        return list(obj.records)
    c = _cost(cost)
    return [Interval(o.stage, o.tick, o.tick + c[o.op], o.op, o.mb, o.chunk) for o in map(lambda x: Op(*x), obj)]


def problems(schedule, p: int, m: int, v: int = 1, cost: dict | None = None) -> list[str]:
    """Every rule the schedule breaks (an empty list: it is valid). The rules: ops, stages,
    micro-batches and chunks in range; each (stage, chunk, micro-batch) has exactly one F and one B
    (and one W, if the schedule has W ops at all); one op at a time per stage; every op after the
    ops it needs: F after the previous virtual stage's F, B after the next virtual stage's B (the
    last one after its own F), W after its own B."""
    try:
        ops = [Op(*x) for x in schedule]
    except TypeError as err:
        return [f"every entry must be (tick, stage, op, mb[, chunk]): {err}"]
    bad = [f"{o}: unknown op {o.op!r} (use F, B or W)" for o in ops if o.op not in OPS]
    bad += [f"{o}: stage, micro-batch or chunk out of range (p={p}, m={m}, v={v})" for o in ops
            if not (0 <= o.stage < p and 0 <= o.mb < m and 0 <= o.chunk < v)]
    if bad:
        return bad
    count = defaultdict(int)
    for o in ops:
        count[o.op, o.stage, o.chunk, o.mb] += 1
    kinds = ("F", "B", "W") if any(o.op == "W" for o in ops) else ("F", "B")
    for key in [(k, s, c, j) for k in kinds for s in range(p) for c in range(v) for j in range(m)]:
        if count[key] != 1:
            k, s, c, j = key
            bad.append(f"{k} of micro-batch {j} on stage {s} (chunk {c}) appears {count[key]} times, not once")
    if bad:
        return bad
    spans = intervals(ops, cost)
    by_stage = defaultdict(list)
    for iv in spans:
        by_stage[iv.stage].append(iv)
    for s, ivs in by_stage.items():
        ivs.sort(key=lambda iv: (iv.start, iv.end))
        for a, b in zip(ivs, ivs[1:]):
            if b.start < a.end - 1e-9:
                bad.append(f"stage {s} runs two ops at once: {a.op}{a.mb} and {b.op}{b.mb} at tick {b.start:g}")
    at = {(iv.op, iv.stage, iv.chunk, iv.mb): iv for iv in spans}
    last = p * v - 1

    def where(k):  # virtual stage k -> (stage, chunk)
        return k % p, k // p

    for j in range(m):
        for k in range(p * v):
            s, c = where(k)
            needs = [("F", *where(k - 1))] if k else []
            if k < last:
                needs_b = [("B", *where(k + 1))]
            else:
                needs_b = [("F", s, c)]
            checks = [("F", n) for n in needs] + [("B", n) for n in needs_b]
            if "W" in kinds:
                checks.append(("W", ("B", s, c)))
            for op, (nop, ns, nc) in checks:
                me, dep = at[op, s, c, j], at[nop, ns, nc, j]
                if me.start < dep.end - 1e-9:
                    bad.append(f"{op} of micro-batch {j} on stage {s} (chunk {c}) starts at {me.start:g}, before "
                               f"{nop} on stage {ns} (chunk {nc}) ends at {dep.end:g}")
    return bad


def validate(schedule, p: int, m: int, v: int = 1, cost: dict | None = None) -> list[Op]:
    """The schedule's ops sorted by (tick, stage) if it is valid; else ValueError listing ``problems``."""
    bad = problems(schedule, p, m, v, cost)
    if bad:
        more = f"\n  ... and {len(bad) - 8} more" if len(bad) > 8 else ""
        raise ValueError("invalid schedule:\n  " + "\n  ".join(bad[:8]) + more)
    return sorted((Op(*x) for x in schedule), key=lambda o: (o.tick, o.stage))


def busy_idle(obj, p: int | None = None, cost: dict | None = None) -> tuple[list[float], float]:
    """Busy time per stage and the span (first start to last end, over all stages)."""
    ivs = intervals(obj, cost)
    p = p if p is not None else max(iv.stage for iv in ivs) + 1
    span = max(iv.end for iv in ivs) - min(iv.start for iv in ivs)
    busy = [0.0] * p
    for iv in ivs:
        busy[iv.stage] += iv.end - iv.start
    return busy, span


def bubble_fraction(obj, p: int | None = None, cost: dict | None = None) -> float:
    """Idle share of the p stages over the span: 1 − Σ busy / (p · span). GPipe and 1F1B with
    F = B = 1 tick: exactly (p−1)/(m+p−1)."""
    busy, span = busy_idle(obj, p, cost)
    return 1 - sum(busy) / (len(busy) * span)


def in_flight(obj, p: int | None = None, cost: dict | None = None, until: str = "last") -> list[list[tuple[float, int]]]:
    """Per stage, the steps of (time, micro-batch chunks whose activations the stage holds): a
    micro-batch enters at the start of its F and leaves at the end of its last backward op on that
    stage (W if the stage has one for it, else B); ``until="B"`` counts only from F to the end of B.
    Leaving is counted before entering at equal times."""
    ivs = intervals(obj, cost)
    p = p if p is not None else max(iv.stage for iv in ivs) + 1
    has_w = {(iv.stage, iv.chunk, iv.mb) for iv in ivs if iv.op == "W"}
    events = defaultdict(list)
    for iv in ivs:
        key = (iv.stage, iv.chunk, iv.mb)
        if iv.op == "F":
            events[iv.stage].append((iv.start, 1))
        elif iv.op == ("W" if key in has_w and until != "B" else "B"):
            events[iv.stage].append((iv.end, -1))
    steps = []
    for s in range(p):
        n, out = 0, []
        for t, d in sorted(events[s]):
            n += d
            out.append((t, n))
        steps.append(out)
    return steps


def peak_in_flight(obj, p: int | None = None, cost: dict | None = None, until: str = "last") -> list[int]:
    """Per stage, the most micro-batches (chunks) in flight at once (see ``in_flight``)."""
    return [max((n for _, n in steps), default=0) for steps in in_flight(obj, p, cost, until)]


class Timeline:
    """Measured intervals of real processes (seconds). ``records``: a list of ``Interval``."""

    def __init__(self, records=()):
        self.records = [Interval(*r) for r in records]

    def add(self, stage: int, start: float, end: float, op: str, mb: int, chunk: int = 0) -> None:
        self.records.append(Interval(stage, start, end, op, mb, chunk))

    def to_list(self) -> list[list]:
        """Plain lists, for JSON."""
        return [list(r) for r in self.records]

    @classmethod
    def merge(cls, *timelines) -> "Timeline":
        """One timeline from several (e.g. one per rank, read back from JSON lists)."""
        return cls([r for t in timelines for r in (t.records if isinstance(t, Timeline) else t)])

    def wrap(self, module, stage: int, chunk: int = 0, clock=time.perf_counter):
        """A module that runs ``module`` and records each forward and backward on this timeline.

        The i-th forward call is micro-batch i (``reset()`` the count between steps); the forward
        runs from entering the stage to leaving it, the backward from the gradient arriving at the
        stage's output to it leaving the stage's input. Works for the first stage too (its input
        needs no gradient). Meta tensors (shape inference) are not recorded."""
        import torch
        timeline = self

        class Stamp(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x, anchor, box, mb, enter):
                ctx.box, ctx.mb, ctx.enter = box, mb, enter
                now = clock()
                if enter:
                    box[mb] = now
                else:
                    timeline.add(stage, box.pop(mb), now, "F", mb, chunk)
                return x.view_as(x)

            @staticmethod
            def backward(ctx, grad):
                now = clock()
                if ctx.enter:
                    timeline.add(stage, ctx.box.pop(("B", ctx.mb)), now, "B", ctx.mb, chunk)
                else:
                    ctx.box[("B", ctx.mb)] = now
                return grad, None, None, None, None

        class Recorded(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner, self.count, self.box = module, 0, {}
                self.anchor = torch.zeros((), requires_grad=True)  # so the entry stamp always gets a backward

            def reset(self):
                self.count = 0

            def forward(self, x):
                if x.device.type == "meta":
                    return self.inner(x)
                mb, self.count = self.count, self.count + 1
                y = self.inner(Stamp.apply(x, self.anchor, self.box, mb, True))
                return Stamp.apply(y, self.anchor, self.box, mb, False)

        return Recorded()


def draw(obj, ax, p: int | None = None, cost: dict | None = None, unit: str | None = None, labels: bool = True):
    """A Gantt chart: one row per stage (stage 0 on top), one box per op, coloured F / B / W, labelled
    with its micro-batch; chunks > 0 hatched. Timelines are drawn in ms from their first start."""
    from matplotlib.patches import Patch, Rectangle
    ivs = intervals(obj, cost)
    p = p if p is not None else max(iv.stage for iv in ivs) + 1
    scale, t0 = (1e3, min(iv.start for iv in ivs)) if isinstance(obj, Timeline) else (1, 0)
    unit = unit or ("ms" if isinstance(obj, Timeline) else "tick")
    end = max((iv.end - t0) * scale for iv in ivs)
    for iv in ivs:
        x, w = (iv.start - t0) * scale, (iv.end - iv.start) * scale
        ax.add_patch(Rectangle((x, p - 1 - iv.stage + 0.1), w, 0.8, facecolor=COLORS.get(iv.op, "gray"),
                               edgecolor="black", lw=0.5, hatch="//" if iv.chunk else None))
        if labels and w > end / 60:
            ax.text(x + w / 2, p - 1 - iv.stage + 0.5, str(iv.mb), ha="center", va="center", fontsize=7, color="white")
    ax.set(xlim=(0, end * 1.01), ylim=(0, p), xlabel=f"time ({unit})")
    ax.set_yticks([p - 1 - s + 0.5 for s in range(p)], [f"stage {s}" for s in range(p)])
    used = [o for o in OPS if any(iv.op == o for iv in ivs)]
    names = {"F": "forward", "B": "backward" if "W" not in used else "backward (input grad)", "W": "weight grad"}
    ax.legend(handles=[Patch(color=COLORS[o], label=names[o]) for o in used], loc="upper left", fontsize=7,
              bbox_to_anchor=(1.005, 1.0), borderaxespad=0)  # outside the boxes
