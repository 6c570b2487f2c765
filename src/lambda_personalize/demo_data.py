"""A synthetic but realistic demo catalog, and its publication through the publish module.

Items have a title, one to three genres (Personalize's pipe-separated categorical column), a
year and a price. Users have tastes over genres; each interaction is drawn from a softmax of
``taste . item + log popularity`` where popularity has a long (Zipf) tail, so a few items are
everywhere and most are niche. The published embeddings are the generating factors with the
popularity term folded in as one more dimension (user side 1, item side the log popularity):
exactly what a team's matrix factorisation with an item bias would hand over.

Files written to the data folder, in Personalize's dataset formats where one exists:

    items.csv         ITEM_ID,TITLE,GENRES,YEAR,PRICE          (Items dataset)
    interactions.csv  USER_ID,ITEM_ID,EVENT_TYPE,TIMESTAMP     (Interactions dataset)
    item_ids.txt, item_factors.npy, user_ids.txt, user_factors.npy
    demo.json         the generator's parameters; files are reused while they match
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from personalize_core.modelstore.bucket import ModelBucket
from personalize_core.modelstore.layout import Recipe

from .publish import PublishInputs, publish_files

GENRES = [
    "action",
    "adventure",
    "animation",
    "comedy",
    "crime",
    "documentary",
    "drama",
    "family",
    "fantasy",
    "history",
    "horror",
    "music",
    "mystery",
    "romance",
    "sci-fi",
    "thriller",
    "war",
    "western",
]
_ADJECTIVES = [
    "Silent",
    "Crimson",
    "Hidden",
    "Broken",
    "Golden",
    "Last",
    "Midnight",
    "Electric",
    "Frozen",
    "Wild",
    "Distant",
    "Burning",
    "Quiet",
    "Lost",
    "Iron",
    "Paper",
    "Velvet",
    "Hollow",
    "Secret",
    "Northern",
    "Savage",
    "Gentle",
    "Restless",
    "Shattered",
]
_NOUNS = [
    "Harbor",
    "Empire",
    "Garden",
    "Signal",
    "Frontier",
    "River",
    "Kingdom",
    "Orchard",
    "Machine",
    "Letter",
    "Voyage",
    "Mirror",
    "Circus",
    "Station",
    "Forest",
    "Island",
    "Promise",
    "Horizon",
    "Engine",
    "Lantern",
    "Winter",
    "Canyon",
    "Republic",
    "Tide",
]
EVENT_TYPES = ("watch", "click", "purchase")
BASE_TIMESTAMP = 1_700_000_000

#: Campaign name -> recipe; events/*.json and the README name these.
DEMO_CAMPAIGNS: dict[str, Recipe] = {
    "demo-user-personalization": Recipe.USER_PERSONALIZATION,
    "demo-related-items": Recipe.RELATED_ITEMS,
    "demo-popular-items": Recipe.POPULAR_ITEMS,
    "demo-personalized-ranking": Recipe.PERSONALIZED_RANKING,
}


@dataclass(frozen=True, slots=True)
class DemoSpec:
    items: int = 5000
    users: int = 3000
    dimensions: int = 32
    interactions_per_user: int = 30
    seed: int = 2024
    version: int = 2  # bump when the generator changes, so old data folders are regenerated


@dataclass(frozen=True, slots=True)
class DemoFiles:
    folder: Path

    @property
    def items_csv(self) -> Path:
        return self.folder / "items.csv"

    @property
    def interactions_csv(self) -> Path:
        return self.folder / "interactions.csv"

    @property
    def item_ids(self) -> Path:
        return self.folder / "item_ids.txt"

    @property
    def item_factors(self) -> Path:
        return self.folder / "item_factors.npy"

    @property
    def user_ids(self) -> Path:
        return self.folder / "user_ids.txt"

    @property
    def user_factors(self) -> Path:
        return self.folder / "user_factors.npy"

    @property
    def context_json(self) -> Path:
        return self.folder / "context.json"

    @property
    def stamp(self) -> Path:
        return self.folder / "demo.json"


def ensure_demo_data(folder: Path, spec: DemoSpec) -> tuple[DemoFiles, bool]:
    """The demo's files in ``folder``: reused when they were made with ``spec``. Returns (files, made)."""
    files = DemoFiles(folder)
    try:
        if json.loads(files.stamp.read_text("utf-8")) == asdict(spec):
            return files, False
    except (OSError, ValueError):
        pass
    folder.mkdir(parents=True, exist_ok=True)
    files.stamp.unlink(missing_ok=True)
    write_demo_data(files, spec)
    files.stamp.write_text(json.dumps(asdict(spec), indent=2), "utf-8")  # last: marks the set complete
    return files, True


def write_demo_data(files: DemoFiles, spec: DemoSpec) -> None:
    rng = np.random.default_rng(spec.seed)
    taste_dims = spec.dimensions - 1  # the last dimension carries the popularity term
    item_ids = [f"item-{i}" for i in range(spec.items)]
    user_ids = [f"user-{u}" for u in range(spec.users)]

    # Genres: each genre has a direction in taste space; items mix one to three of them.
    genre_vectors = rng.normal(0.0, 1.0, (len(GENRES), taste_dims))
    genre_weights = rng.dirichlet(np.full(len(GENRES), 0.6))  # some genres are far more common
    item_genres = [
        rng.choice(len(GENRES), size=rng.choice(3, p=[0.5, 0.35, 0.15]) + 1, replace=False, p=genre_weights)
        for _ in range(spec.items)
    ]
    item_vectors = np.stack([genre_vectors[g].mean(axis=0) for g in item_genres])
    item_vectors += rng.normal(0.0, 0.35, item_vectors.shape)
    # Long tail: Zipf popularity over a random order of the items.
    popularity = 1.0 / np.arange(1, spec.items + 1) ** 1.07
    rng.shuffle(popularity)
    log_popularity = np.log(popularity / popularity.max())

    # Users like two or three genres strongly, the rest a little.
    user_tastes = rng.dirichlet(np.full(len(GENRES), 0.25), size=spec.users) @ genre_vectors
    user_tastes = 1.6 * user_tastes / np.linalg.norm(user_tastes, axis=1, keepdims=True)

    interactions = _sample_interactions(rng, user_tastes, item_vectors, log_popularity, spec)

    item_factors = np.hstack([item_vectors * 0.6, log_popularity[:, None]]).astype(np.float32)
    user_factors = np.hstack([user_tastes * 0.6, np.ones((spec.users, 1))]).astype(np.float32)
    np.save(files.item_factors, item_factors)
    np.save(files.user_factors, user_factors)

    # Context (DEVICE): on a TV, people lean to documentaries; on a phone, to comedy and animation.
    def lean(*genres: str) -> list[float]:
        direction = sum(genre_vectors[GENRES.index(g)] for g in genres)
        return [*(0.6 * 1.2 * direction / np.linalg.norm(direction)).round(4).tolist(), 0.0]

    context = {
        "DEVICE": {
            "tv": lean("documentary"),
            "phone": lean("comedy", "animation"),
            "desktop": [0.0] * spec.dimensions,
        }
    }
    files.context_json.write_text(json.dumps(context), "utf-8")
    files.item_ids.write_text("\n".join(item_ids) + "\n", "utf-8")
    files.user_ids.write_text("\n".join(user_ids) + "\n", "utf-8")

    with files.items_csv.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["ITEM_ID", "TITLE", "GENRES", "YEAR", "PRICE"])
        for index, genres in enumerate(item_genres):
            title = f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
            if rng.random() < 0.2:
                title += f" {rng.choice(['II', 'III', 'Returns', 'Rising', 'Reborn'])}"
            writer.writerow(
                [
                    item_ids[index],
                    title,
                    "|".join(GENRES[g] for g in sorted(genres)),
                    int(rng.integers(1950, 2025)),
                    f"{rng.choice([4.99, 9.99, 14.99, 19.99, 24.99]) + rng.integers(0, 3) * 5:.2f}",
                ]
            )
    with files.interactions_csv.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["USER_ID", "ITEM_ID", "EVENT_TYPE", "TIMESTAMP"])
        for user, item, event, timestamp in interactions:
            writer.writerow([user_ids[user], item_ids[item], EVENT_TYPES[event], timestamp])


def _sample_interactions(
    rng: np.random.Generator,
    user_tastes: np.ndarray,
    item_vectors: np.ndarray,
    log_popularity: np.ndarray,
    spec: DemoSpec,
) -> list[tuple[int, int, int, int]]:
    """Each user's items, drawn without replacement from softmax(taste . item + log popularity)."""
    rows: list[tuple[int, int, int, int]] = []
    counts = np.clip(rng.geometric(1.0 / spec.interactions_per_user, spec.users), 3, spec.items // 4)
    for start in range(0, spec.users, 512):
        block = slice(start, min(start + 512, spec.users))
        logits = user_tastes[block] @ item_vectors.T + log_popularity
        # Gumbel top-k: the k largest of logits + Gumbel noise are a sample without replacement.
        keys = logits + rng.gumbel(size=logits.shape)
        for offset, row in enumerate(keys):
            user = start + offset
            chosen = np.argpartition(-row, counts[user])[: counts[user]]
            times = np.sort(rng.integers(0, 180 * 86400, len(chosen)))
            events = rng.choice(len(EVENT_TYPES), size=len(chosen), p=[0.6, 0.3, 0.1])
            rows.extend(
                (user, int(item), int(event), BASE_TIMESTAMP + int(t))
                for item, event, t in zip(chosen, events, times, strict=True)
            )
    rows.sort(key=lambda row: row[3])
    return rows


def publish_demo(
    bucket: ModelBucket, files: DemoFiles, region: str, account: str
) -> dict[str, dict[str, Any]]:
    """Publish one campaign per recipe through ``publish_files``, as ``lambda-personalize publish`` does.

    Versions are content-addressed, so publishing the same files again gives the same ARNs; a
    version that exists already is not uploaded again, only its campaign pointer is written.
    """
    published: dict[str, dict[str, Any]] = {}
    for campaign, recipe in DEMO_CAMPAIGNS.items():
        users = recipe.needs_user_factors
        inputs = PublishInputs(
            solution=campaign,
            recipe=recipe,
            item_ids=files.item_ids,
            item_factors=files.item_factors if recipe.needs_item_factors else None,
            user_ids=files.user_ids if users else None,
            user_factors=files.user_factors if users else None,
            interactions=files.interactions_csv,
            items=files.items_csv,  # TITLE, GENRES, YEAR, PRICE: filters and metadata
            context_factors=files.context_json if users else None,
        )
        published[campaign] = publish_files(
            bucket, inputs, region=region, account=account, campaign=campaign, exist_ok=True
        )
    return published
