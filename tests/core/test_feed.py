"""The feed's watermark rules: a gap is passed only once the database shows it final."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from baton.core.watermark import Gap, coalesce, covers, fill, gaps_below, settle, watermark

HORIZON = 1000  # the xmax of the read's snapshot: every transaction holding a gap is below it
STATES = st.sampled_from(["committed", "running", "gone"])


def test_a_gap_waits_for_the_database_not_the_clock() -> None:
    gaps = gaps_below(0, [1, 3, 6], HORIZON)
    assert gaps == [Gap(2, 2, HORIZON), Gap(4, 5, HORIZON)]
    assert watermark(6, gaps) == 1
    # An older transaction still runs (xmin below the horizon): nothing is final, however late.
    assert watermark(6, settle(gaps, HORIZON - 1)) == 1
    # Every transaction below the horizon has ended: what is still missing is gone for good.
    assert watermark(6, settle(fill(gaps, [4]), HORIZON)) == 6
    assert gaps_below(0, [1, 3, 6], None) == []  # SQLite: final as soon as seen
    assert watermark(4, []) == 4


@given(
    after=st.integers(0, 5),
    first=st.lists(STATES, max_size=30),
    then=st.lists(STATES, min_size=30, max_size=30),
)
def test_the_watermark_never_passes_an_id_that_may_still_commit(
    after: int, first: list[str], then: list[str]
) -> None:
    """Ids after `after` are committed, still running or gone (rolled back, purged) when the
    events are read; a running one then commits, rolls back or still runs at the second look.
    Every id up to the watermark was delivered or is gone; none may still commit."""
    ids = range(after + 1, after + 1 + len(first))
    visible = [i for i, state in zip(ids, first, strict=False) if state == "committed"]
    read_to = visible[-1] if visible else after
    later = {
        i: (then[k] if state == "running" else state)
        for k, (i, state) in enumerate(zip(ids, first, strict=False))
    }
    gaps = gaps_below(after, visible, HORIZON)
    found = [i for i in ids if first[i - after - 1] == "running" and later[i] == "committed"]
    found = [i for i in found if covers(gaps, i)]  # the second look reads only the gaps
    still_running = any(later[i] == "running" for i in ids)
    oldest_running = HORIZON - 1 if still_running else HORIZON
    open_gaps = settle(fill(gaps, found), oldest_running)
    mark = watermark(read_to, open_gaps)
    delivered = set(visible) | set(found)
    for i in range(after + 1, mark + 1):
        assert i in delivered or later[i] == "gone"
    if not still_running:
        assert mark == read_to  # nothing holds the watermark back once all have ended
    assert after <= mark <= read_to


@given(st.lists(st.integers(1, 400), unique=True, max_size=60), st.integers(1, 10))
def test_coalesced_gaps_still_cover_every_missing_id(ids: list[int], most: int) -> None:
    gaps = [Gap(i, i, HORIZON + i) for i in sorted(ids)]
    merged = coalesce(gaps, most)
    assert len(merged) <= max(most, 1) or not gaps
    assert all(a.last < b.first for a, b in pairwise(merged))
    for gap in gaps:
        assert covers(merged, gap.first)
        (holder,) = [m for m in merged if m.first <= gap.first <= m.last]
        assert holder.horizon >= gap.horizon  # it waits at least as long
    assert not covers(merged, 0) and not covers(merged, 401)


def test_fill_splits_a_gap_around_what_committed() -> None:
    assert fill([Gap(2, 9, 5)], [4, 5, 9, 12]) == [Gap(2, 3, 5), Gap(6, 8, 5)]
    assert fill([Gap(2, 2, 5), Gap(4, 4, 6)], [2]) == [Gap(4, 4, 6)]
