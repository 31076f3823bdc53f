"""Rebuild the learned safety head (bot/safety/data/semantic_head.npz) from the labelled bank.

    python tools/build_safety_head.py [--check]

The bank (bot/safety/data/bank/*.txt) was written for this project (MIT, like the code):
crisis.txt, concern.txt and none.txt hold one message a line; lookalike.txt holds safe
questions that look harmful (labelled none); harm.txt holds `category<TAB>request` lines.
Each message is embedded with the product's own embedding model (all-MiniLM-L6-v2, int8
ONNX), and logistic regressions (scikit-learn) are fitted on the embeddings: crisis against
the rest, concern against the rest, and the harm categories against everything else.
Thresholds are chosen on cross-validated probabilities: the crisis threshold is the lowest
that keeps false alarms on the none and concern messages at or under 3%; a harm request is flagged when 1 - p(none) reaches HARM_FLAG (bot/safety/semantic.py).

`--check` rebuilds in memory and exits 1 when the shipped head differs from what the bank
gives (a bank edited without rebuilding the head).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.safety.semantic import BANK_DIR, HARM_FLAG, HARM_LABELS, HEAD_PATH, read_bank  # noqa: E402
from retrieval.embedders import OnnxMiniLMEmbedder  # noqa: E402

CRISIS_FALSE_ALARMS = 0.03
CONCERN_THRESHOLD = 0.8
HARM_WEIGHT = 3.0  # chosen on the dev messages in tests/data/safety_fresh, not the held-out split
SEED = 7


def bank_digest(rows: list[tuple[str, str]]) -> str:
    return hashlib.sha256("\n".join(f"{label}\t{text}" for label, text in rows).encode()).hexdigest()


def lowest_threshold(scores: np.ndarray, is_positive: np.ndarray, max_false: float) -> float:
    """The lowest threshold whose false-positive rate among the negatives is at most `max_false`."""
    negatives = np.sort(scores[~is_positive])[::-1]
    allowed = int(np.floor(max_false * len(negatives)))
    return float(min(0.95, max(0.3, negatives[allowed] + 1e-4))) if len(negatives) > allowed else 0.3


def fit(x: np.ndarray, y: np.ndarray, c: float, weights: object = "balanced") -> tuple[object, np.ndarray]:
    """A logistic regression on (x, y) and its cross-validated probabilities."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    model = LogisticRegression(C=c, max_iter=5000, class_weight=weights)
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    probabilities = cross_val_predict(model, x, y, cv=folds, method="predict_proba")
    model.fit(x, y)
    return model, probabilities


def build(embedder_model: OnnxMiniLMEmbedder) -> dict[str, np.ndarray]:
    """Three heads: crisis vs the rest and concern vs the rest (sigmoid), and the harm categories
    against everything else (softmax over `none` and HARM_LABELS)."""
    rows = read_bank(BANK_DIR)
    labels = np.array([label for label, _ in rows])
    x = np.asarray(asyncio.run(embedder_model.embed_documents([text for _, text in rows])), dtype=np.float32)
    ordinary = np.isin(labels, ["none", "concern"])
    crisis, crisis_cv = fit(x, (labels == "crisis").astype(int), 16.0)
    crisis_t = lowest_threshold(crisis_cv[:, 1], labels == "crisis", CRISIS_FALSE_ALARMS)
    concern, _ = fit(x, (labels == "concern").astype(int), 4.0)
    harm_y = np.array([HARM_LABELS.index(label) + 1 if label in HARM_LABELS else 0 for label in labels])
    # each harm category weighs 3 ordinary messages: "balanced" weights (10+) made money questions "illicit"
    harm, harm_cv = fit(x, harm_y, 8.0, {index: 1.0 if index == 0 else HARM_WEIGHT for index in range(len(HARM_LABELS) + 1)})
    harm_total = 1.0 - harm_cv[:, 0]
    caught = crisis_cv[labels == "crisis", 1] >= crisis_t
    alarms = crisis_cv[ordinary, 1] >= crisis_t
    print(f"crisis: threshold {crisis_t:.3f}, cross-validated recall {caught.mean():.3f}, false alarms {alarms.mean():.3f}")
    flagged = harm_total >= HARM_FLAG
    print(f"harm: cross-validated caught {flagged[harm_y > 0].mean():.3f}, ordinary flagged {flagged[ordinary].mean():.3f}")
    return {
        "crisis_coef": crisis.coef_.astype(np.float32), "crisis_intercept": crisis.intercept_.astype(np.float32),
        "crisis_threshold": np.float32(crisis_t),
        "concern_coef": concern.coef_.astype(np.float32), "concern_intercept": concern.intercept_.astype(np.float32),
        "concern_threshold": np.float32(CONCERN_THRESHOLD),
        "harm_coef": harm.coef_.astype(np.float32), "harm_intercept": harm.intercept_.astype(np.float32),
        "harm_labels": np.array(("none", *HARM_LABELS)),
        "embedder": np.array(embedder_model.name),
        "bank_sha256": np.array(bank_digest(rows)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the shipped head is out of date")
    args = parser.parse_args()
    head = build(OnnxMiniLMEmbedder())
    if args.check:
        shipped = np.load(HEAD_PATH)
        same = str(shipped["bank_sha256"]) == str(head["bank_sha256"]) and np.allclose(
            shipped["crisis_coef"], head["crisis_coef"], atol=1e-3
        )
        print("the shipped head matches the bank" if same else "the shipped head is out of date: rebuild it")
        return 0 if same else 1
    np.savez_compressed(HEAD_PATH, **head)
    print(f"wrote {HEAD_PATH.relative_to(ROOT)} ({HEAD_PATH.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
