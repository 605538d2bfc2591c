"""Recommend from Python with a trained run.

    .venv/bin/python examples/recommend_api.py runs/RUN "Toy Story" "Heat" "Fargo"
"""

import sys

from llara_kit import Recommender

if __name__ == "__main__":
    run, *history = sys.argv[1:]
    rec = Recommender.from_run(run)
    print("Next for a fan of", ", ".join(history))
    for i, r in enumerate(rec.recommend(history, top_k=5), 1):
        print(f"{i}. {r.title} (item {r.item}, score {r.score:.3f})")
