import polars as pl

from counseltune.curate.split import _largest_remainder, assign_splits

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def dialogs(n: int, source: str = "s", topics=None) -> pl.DataFrame:
    return pl.DataFrame({
        "dialog_id": [f"{source}:{i}" for i in range(n)], "source": [source] * n,
        "topic": topics if topics is not None else [None] * n,
    })


def test_counts_follow_the_fractions_and_sum_to_n():
    assert _largest_remainder(100, FRACTIONS) == {"train": 80, "val": 10, "test": 10}
    assert sum(_largest_remainder(7, FRACTIONS).values()) == 7


def test_split_is_deterministic_for_a_seed_and_changes_with_it():
    a = assign_splits(dialogs(50), {}, FRACTIONS, ["source"], seed=1)
    b = assign_splits(dialogs(50), {}, FRACTIONS, ["source"], seed=1)
    c = assign_splits(dialogs(50), {}, FRACTIONS, ["source"], seed=2)
    assert a.equals(b) and not a.equals(c)


def test_every_source_gets_its_exact_share():
    df = pl.concat([dialogs(20, "x", ["a"] * 10 + ["b"] * 10), dialogs(10, "y")])
    out = assign_splits(df, {}, FRACTIONS, ["source", "topic"], seed=3)
    per = dict(((s, p), n) for s, p, n in out.group_by("source", "split").len().rows())
    assert (per[("x", "train")], per[("x", "val")], per[("x", "test")]) == (16, 2, 2)
    assert (per[("y", "train")], per[("y", "val")], per[("y", "test")]) == (8, 1, 1)


def test_a_source_pinned_to_one_split_stays_there():
    df = pl.concat([dialogs(10, "x"), dialogs(5, "evalset")])
    out = assign_splits(df, {"evalset": "test"}, FRACTIONS, ["source"], seed=3)
    assert out.filter(pl.col("source") == "evalset")["split"].unique().to_list() == ["test"]


def test_adding_a_dialog_to_one_source_leaves_the_other_sources_alone():
    before = assign_splits(pl.concat([dialogs(40, "x"), dialogs(10, "y")]), {}, FRACTIONS, ["source"], seed=5)
    after = assign_splits(pl.concat([dialogs(41, "x"), dialogs(10, "y")]), {}, FRACTIONS, ["source"], seed=5)
    y = lambda df: df.filter(pl.col("source") == "y").sort("dialog_id")["split"].to_list()  # noqa: E731
    assert y(before) == y(after)


def test_small_topics_are_spread_over_the_splits_not_all_in_train():
    # eight one-dialog topics, as in a small AnnoMI sample: exact totals 6/1/1, not 8/0/0
    df = dialogs(8, "annomi", [f"topic{i}" for i in range(8)])
    out = assign_splits(df, {}, FRACTIONS, ["source", "topic"], seed=1)
    assert out.group_by("split").len().sort("split").rows() == [("test", 1), ("train", 6), ("val", 1)]


def test_each_topic_gets_a_proportional_share():
    df = dialogs(60, "x", ["a"] * 30 + ["b"] * 30)
    out = assign_splits(df, {}, FRACTIONS, ["source", "topic"], seed=1)
    per_topic = out.group_by("topic", "split").len()
    assert per_topic.filter(pl.col("split") == "train")["len"].to_list() == [24, 24]
