"""course_utils.pipeline: validation, bubble, in-flight counts, timelines and drawing."""
from fractions import Fraction

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from course_utils.pipeline import (Interval, Op, Timeline, bubble_fraction, draw, in_flight,  # noqa: E402
                                   peak_in_flight, problems, validate)


def gpipe(p, m):
    """All forwards, then all backwards (in forward order), F and B one tick each."""
    ops = [Op(s + j, s, "F", j) for s in range(p) for j in range(m)]
    return ops + [Op(m + p - 1 + j + p - 1 - s, s, "B", j) for s in range(p) for j in range(m)]


def place(orders, cost=None):
    """Ticks for per-stage op orders: each op as soon as its stage is free and its inputs are done."""
    cost = {"F": 1, "B": 1, "W": 1, **(cost or {})}
    p, done, free, out, pos = len(orders), {}, [0] * len(orders), [], [0] * len(orders)
    while any(pos[s] < len(orders[s]) for s in range(p)):
        moved = False
        for s in range(p):
            if pos[s] == len(orders[s]):
                continue
            op, j = orders[s][pos[s]]
            need = {"F": [("F", s - 1, j)] if s else [], "W": [("B", s, j)],
                    "B": [("B", s + 1, j)] if s < p - 1 else [("F", s, j)]}[op]
            if all(n in done for n in need):
                t = max([free[s]] + [done[n] for n in need])
                out.append(Op(t, s, op, j))
                done[(op, s, j)] = free[s] = t + cost[op]
                pos[s] += 1
                moved = True
        assert moved, "deadlock"
    return out


def one_f_one_b(p, m):
    orders = []
    for s in range(p):
        warm = min(p - 1 - s, m)
        order = [("F", j) for j in range(warm)]
        for j in range(m - warm):
            order += [("F", warm + j), ("B", j)]
        order += [("B", j) for j in range(m - warm, m)]
        orders.append(order)
    return place(orders)


@pytest.mark.parametrize("p,m", [(2, 1), (2, 2), (2, 8), (4, 4), (4, 16), (3, 7)])
def test_gpipe_and_1f1b_bubble_is_exact(p, m):
    for sched in (gpipe(p, m), one_f_one_b(p, m)):
        assert problems(sched, p, m) == []
        assert Fraction(bubble_fraction(sched, p)).limit_denominator(1000) == Fraction(p - 1, m + p - 1)


@pytest.mark.parametrize("p,m", [(2, 2), (2, 8), (4, 8)])
def test_in_flight_gpipe_m_and_1f1b_p_minus_rank(p, m):
    assert peak_in_flight(gpipe(p, m), p) == [m] * p
    assert peak_in_flight(one_f_one_b(p, m), p) == [p - s for s in range(p)]
    steps = in_flight(gpipe(p, m), p)
    assert all(s[-1][1] == 0 for s in steps)  # everything released at the end


def test_validate_returns_sorted_ops_and_accepts_plain_tuples():
    ops = validate([tuple(o) for o in gpipe(2, 2)], 2, 2)
    assert ops == sorted(ops, key=lambda o: (o.tick, o.stage)) and isinstance(ops[0], Op)


def _broken(p=2, m=2):
    good = gpipe(p, m)
    early = [o._replace(tick=o.tick - 1) if (o.op, o.stage, o.mb) == ("B", 0, 0) else o for o in good]
    clash = [o._replace(tick=0) if (o.op, o.stage, o.mb) == ("F", 0, 1) else o for o in good]
    missing = [o for o in good if (o.op, o.stage, o.mb) != ("B", 1, 1)]
    twice = good + [Op(99, 0, "F", 0)]
    forward_too_early = [o._replace(tick=0) if (o.op, o.stage, o.mb) == ("F", 1, 0) else o for o in good]
    return {"early": early, "clash": clash, "missing": missing, "twice": twice, "forward": forward_too_early,
            "range": good + [Op(50, 2, "F", 0)], "unknown": good + [Op(50, 0, "X", 0)]}


@pytest.mark.parametrize("name", list(_broken()))
def test_validate_rejects_broken_schedules(name):
    sched = _broken()[name]
    assert problems(sched, 2, 2)
    with pytest.raises(ValueError, match="invalid schedule"):
        validate(sched, 2, 2)


def test_w_ops_must_follow_their_b_and_exist_for_all():
    sched = gpipe(2, 2) + [Op(10 + j + s, s, "W", j) for s in range(2) for j in range(2)]
    assert problems(sched, 2, 2) == []
    assert problems(sched[:-1], 2, 2)  # one W missing
    assert peak_in_flight(sched, 2) == [2, 2] and peak_in_flight(sched, 2, until="B") == [2, 2]
    late_w = gpipe(2, 2) + [Op(20 + j + s, s, "W", j) for s in range(2) for j in range(2)]
    assert in_flight(late_w, 2)[0][-1] == (22, 0) and in_flight(late_w, 2, until="B")[0][-1] == (6, 0)
    bad = [o._replace(tick=0) if o.op == "W" and o.stage == 0 and o.mb == 0 else o for o in sched]
    assert problems(bad, 2, 2)


def test_interleaved_chunks_follow_the_virtual_stage_order():
    p, v, m = 2, 2, 1  # virtual stages: (s0,c0) (s1,c0) (s0,c1) (s1,c1)
    fwd = [Op(0, 0, "F", 0, 0), Op(1, 1, "F", 0, 0), Op(2, 0, "F", 0, 1), Op(3, 1, "F", 0, 1)]
    bwd = [Op(4, 1, "B", 0, 1), Op(5, 0, "B", 0, 1), Op(6, 1, "B", 0, 0), Op(7, 0, "B", 0, 0)]
    assert problems(fwd + bwd, p, m, v) == []
    swapped = [Op(0, 0, "F", 0, 1), Op(1, 1, "F", 0, 0), Op(2, 0, "F", 0, 0), Op(3, 1, "F", 0, 1)]
    assert problems(swapped + bwd, p, m, v)
    assert problems(fwd + bwd, p, m, 1)  # chunk 1 out of range for v = 1


def test_cost_changes_durations():
    sched = gpipe(2, 2)
    assert problems(sched, 2, 2, cost={"F": 2}) != []  # F lasting 2 ticks overlaps the next one
    assert bubble_fraction(sched, 2) == pytest.approx(1 / 3)


def test_garbage_is_a_problem_not_a_crash():
    assert problems([(1, 2)], 2, 2)
    assert problems([], 2, 1)


def test_timeline_measures_and_round_trips():
    t = Timeline()
    t.add(0, 0.0, 1.0, "F", 0)
    t.add(1, 1.0, 2.0, "F", 0)
    t.add(1, 2.0, 3.0, "B", 0)
    t.add(0, 3.0, 4.0, "B", 0)
    assert bubble_fraction(t) == pytest.approx(0.5)
    assert peak_in_flight(t) == [1, 1]
    again = Timeline.merge(t.to_list()[:2], Timeline(t.to_list()[2:]))
    assert again.records == t.records and isinstance(again.records[0], Interval)


def test_draw_makes_one_box_per_op():
    fig, ax = plt.subplots()
    draw(one_f_one_b(2, 4), ax)
    assert len(ax.patches) == 16
    fig2, ax2 = plt.subplots()
    t = Timeline([(0, 1.0, 1.01, "F", 0), (0, 1.01, 1.02, "B", 0)])
    draw(t, ax2)
    assert ax2.get_xlabel() == "time (ms)" and ax2.get_xlim()[1] == pytest.approx(20 * 1.01)
    plt.close("all")


def test_wrap_records_forward_and_backward_of_real_stages():
    torch = pytest.importorskip("torch")
    t = Timeline()
    s0 = t.wrap(torch.nn.Linear(3, 4), 0)
    s1 = t.wrap(torch.nn.Linear(4, 1), 1)
    x = torch.randn(8, 3)
    for xm in x.chunk(2):
        s1(s0(xm)).sum().backward()
    assert sorted((r.stage, r.op, r.mb) for r in t.records) == sorted(
        (s, op, j) for s in range(2) for op in "FB" for j in range(2))
    assert all(r.end >= r.start for r in t.records)
    f0 = {r.mb: r for r in t.records if r.stage == 0 and r.op == "F"}
    b0 = {r.mb: r for r in t.records if r.stage == 0 and r.op == "B"}
    assert all(b0[j].start >= f0[j].end for j in range(2))
    expected = torch.nn.Linear(3, 4)
    expected.load_state_dict(s0.inner.state_dict())
    assert torch.allclose(s0(x[:1]), expected(x[:1]))  # the wrapper computes the same values
