"""Rebuild the learned safety head (bot/safety/data/semantic_head.npz) from the labelled bank.

    python tools/build_safety_head.py [--check]

The bank (bot/safety/data/bank/*.txt) was written for this project (MIT, like the code):
crisis.txt, concern.txt and none.txt hold one message a line; lookalike.txt holds safe
questions that look harmful (labelled none); harm.txt holds `category<TAB>request` lines.
Each message is embedded with the product's own embedding model (all-MiniLM-L6-v2, int8
ONNX), and a multinomial logistic regression (scikit-learn) is fitted on the embeddings.
Thresholds are chosen on cross-validated probabilities: the crisis threshold is the lowest
that keeps false alarms on the none and concern messages at or under 2%; each harm
category's, the lowest that keeps ordinary messages flagged at or under 1%.

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

from bot.safety.semantic import BANK_DIR, HEAD_PATH, LABELS, read_bank  # noqa: E402
from retrieval.embedders import OnnxMiniLMEmbedder  # noqa: E402

CRISIS_FALSE_ALARMS = 0.02
HARM_FALSE_FLAGS = 0.01
SEED = 7


def bank_digest(rows: list[tuple[str, str]]) -> str:
    return hashlib.sha256("\n".join(f"{label}\t{text}" for label, text in rows).encode()).hexdigest()


def lowest_threshold(scores: np.ndarray, is_positive: np.ndarray, max_false: float) -> float:
    """The lowest threshold whose false-positive rate among the negatives is at most `max_false`."""
    negatives = np.sort(scores[~is_positive])[::-1]
    allowed = int(np.floor(max_false * len(negatives)))
    return float(min(0.95, max(0.3, negatives[allowed] + 1e-4))) if len(negatives) > allowed else 0.3


def build(embedder_model: OnnxMiniLMEmbedder) -> dict[str, np.ndarray]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rows = read_bank(BANK_DIR)
    labels = np.array([LABELS.index(label) for label, _ in rows])
    vectors = asyncio.run(embedder_model.embed_documents([text for _, text in rows]))
    x = np.asarray(vectors, dtype=np.float32)
    model = LogisticRegression(C=8.0, max_iter=4000, class_weight="balanced")
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=SEED)
    probabilities = cross_val_predict(model, x, labels, cv=folds, method="predict_proba")
    crisis = LABELS.index("crisis")
    thresholds = np.zeros(len(LABELS), dtype=np.float32)
    thresholds[crisis] = lowest_threshold(probabilities[:, crisis], labels == crisis, CRISIS_FALSE_ALARMS)
    ordinary = np.isin(labels, [LABELS.index("none"), LABELS.index("concern")])
    for index, label in enumerate(LABELS):
        if label in ("none", "concern", "crisis"):
            continue
        scores = probabilities[:, index]
        mask = ordinary | (labels == index)
        thresholds[index] = lowest_threshold(scores[mask], labels[mask] == index, HARM_FALSE_FLAGS)
    thresholds[LABELS.index("concern")] = 0.5
    report(probabilities, labels, thresholds)
    model.fit(x, labels)
    return {
        "coef": model.coef_.astype(np.float32),
        "intercept": model.intercept_.astype(np.float32),
        "labels": np.array(LABELS),
        "thresholds": thresholds,
        "embedder": np.array(embedder_model.name),
        "bank_sha256": np.array(bank_digest(rows)),
    }


def report(probabilities: np.ndarray, labels: np.ndarray, thresholds: np.ndarray) -> None:
    """Cross-validated figures for the chosen thresholds (the bank only: not a fresh evaluation)."""
    crisis = LABELS.index("crisis")
    caught = probabilities[labels == crisis, crisis] >= thresholds[crisis]
    ordinary = np.isin(labels, [LABELS.index("none"), LABELS.index("concern")])
    alarms = probabilities[ordinary, crisis] >= thresholds[crisis]
    print(f"crisis: threshold {thresholds[crisis]:.3f}, cross-validated recall {caught.mean():.3f}, false alarms {alarms.mean():.3f}")
    harm_idx = [i for i, label in enumerate(LABELS) if label not in ("none", "concern", "crisis")]
    flagged = (probabilities[:, harm_idx] >= thresholds[harm_idx]).any(axis=1)
    harmful = np.isin(labels, harm_idx)
    print(f"harm: cross-validated caught {flagged[harmful].mean():.3f}, ordinary flagged {flagged[ordinary].mean():.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the shipped head is out of date")
    args = parser.parse_args()
    head = build(OnnxMiniLMEmbedder())
    if args.check:
        shipped = np.load(HEAD_PATH)
        same = str(shipped["bank_sha256"]) == str(head["bank_sha256"]) and np.allclose(
            shipped["coef"], head["coef"], atol=1e-3
        )
        print("the shipped head matches the bank" if same else "the shipped head is out of date: rebuild it")
        return 0 if same else 1
    np.savez_compressed(HEAD_PATH, **head)
    print(f"wrote {HEAD_PATH.relative_to(ROOT)} ({HEAD_PATH.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
