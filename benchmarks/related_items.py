"""RELATED_ITEMS: item-factor cosine against item-item co-occurrence, on the same holdout
(Personalize's split, training/evaluation.py), as every RELATED_ITEMS training run compares them
before keeping the better (training/trainer.py):

    item factors   cosine of the ALS item factors
    co-occurrence  cosine of the items' user sets (how many users touched both, over the square root
                   of each one's users), the training users' interactions: SIMS-like

For each test user the query is their latest input item; the answer is compared with their
held-out newest interactions.

    .venv/bin/python -m benchmarks.related_items                  # the demo's catalog
    .venv/bin/python -m benchmarks.related_items --synthetic 1000000
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.training import synthetic
from lambda_personalize.demo_data import DemoSpec, ensure_demo_data
from personalize_core.datasets.data import Interactions
from personalize_core.modelstore.layout import Recipe
from personalize_core.training.config import TrainingConfig
from personalize_core.training.trainer import TrainingInput, train


def demo_interactions(folder: Path) -> Interactions:
    files, _ = ensure_demo_data(folder, DemoSpec())
    with files.interactions_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    users = sorted({r["USER_ID"] for r in rows})
    items = sorted({r["ITEM_ID"] for r in rows})
    types = sorted({r["EVENT_TYPE"] for r in rows})
    user_of, item_of, type_of = (
        {u: i for i, u in enumerate(users)},
        {v: i for i, v in enumerate(items)},
        {t: i for i, t in enumerate(types)},
    )
    return Interactions(
        users,
        items,
        np.array([user_of[r["USER_ID"]] for r in rows], dtype=np.int32),
        np.array([item_of[r["ITEM_ID"]] for r in rows], dtype=np.int32),
        np.array([int(r["TIMESTAMP"]) for r in rows], dtype=np.int64),
        types,
        np.array([type_of[r["EVENT_TYPE"]] for r in rows], dtype=np.int16),
        np.full(len(rows), np.nan, dtype=np.float32),
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--synthetic", type=int, default=0, help="interactions of a synthetic catalog")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.synthetic:
            data = synthetic(args.synthetic, args.synthetic // 10, args.synthetic // 50)
        else:
            data = demo_interactions(Path(folder))
    trained = train(
        TrainingInput(data),
        TrainingConfig(),
        Recipe.RELATED_ITEMS,
        solution="bench",
        version="v1",
        region="us-east-1",
        account="123456789012",
    )
    rows = {**trained.compared, "popularity": trained.baseline}
    names = ("precision_at_10", "normalized_discounted_cumulative_gain_at_10", "mean_reciprocal_rank_at_25")
    print(
        f"{'':20}"
        + "".join(f"{n.replace('normalized_discounted_cumulative_gain', 'ndcg'):>28}" for n in names)
    )
    for label, values in rows.items():
        print(f"{label:20}" + "".join(f"{values[n]:28.4f}" for n in names))
    files = trained.prepared.files
    serves = "co-occurrence" if any(name.startswith("co_occurrence/") for name in files) else "item factors"
    print(f"the trained version serves RELATED_ITEMS by: {serves}")


if __name__ == "__main__":
    main()
