"""The learned safety detector: small heads over the message's sentence embedding.

The heads (bot/safety/data/semantic_head.npz) are one-hidden-layer networks (crisis, harm) and a
logistic regression (concern) fitted on a labelled bank of messages written for this project (bot/safety/data/bank/, rebuilt by
tools/build_safety_head.py) over all-MiniLM-L6-v2 embeddings. It reads a message as a
whole, so it catches phrasings the rules have no pattern for (slang, typos, non-native
English, method questions in any wording); the rules still run first and alone decide when
the head cannot (another embedding model, a failure). One label per message:

* ``crisis``: suicidal intent, self-harm, or a method question, whoever it is for;
* ``concern``: low mood, someone else at risk, the topic itself;
* harm categories, against everything else (``violence``, ``illicit``, ``illicit/violent``, ``sexual``,
  ``sexual/minors``, ``harassment``, ``hate``): the offline harm gate's input;
* ``none``.

The embedding is the one retrieval uses for the same text (the embedder caches it), so the
detector costs a matrix product per message, not a second embedding. The crisis head has a second,
lexical view of the text (bot/safety/lexical.py: word pairs and letter pieces, for slang and
misspellings); its p(crisis) is the mean of the two.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from bot.ports import Embedder
from bot.safety.crisis import DOWNGRADES, CrisisSignal, detect, has_idiom, has_indirect_sign
from bot.safety.lexical import LexicalHead

log = logging.getLogger(__name__)

DATA_DIR = Path(str(resources.files("bot.safety") / "data"))
BANK_DIR = DATA_DIR / "bank"
HEAD_PATH = DATA_DIR / "semantic_head.npz"
HARM_FLAG = 0.76  # 1 - p(none) at which the head flags a harmful request (chosen on the dev sets, README)
HARM_CLEAR = 0.5  # under it, the head clears a message the harm rules flagged (homonyms: "kill a process")
HARM_LABELS = ("violence", "illicit", "illicit/violent", "sexual", "sexual/minors", "harassment", "hate")
# embedders whose vectors the head was trained on (the torch build gives cosine 0.9996 to the ONNX one)
COMPATIBLE_EMBEDDERS = frozenset({"all-MiniLM-L6-v2-onnx-int8", "all-MiniLM-L6-v2"})


def read_bank(folder: Path = BANK_DIR) -> list[tuple[str, str]]:
    """(label, message) rows of the labelled bank, in a stable order."""
    rows: list[tuple[str, str]] = []
    for name, label in (("crisis.txt", "crisis"), ("concern.txt", "concern"), ("none.txt", "none"), ("lookalike.txt", "none")):
        rows += [(label, line.strip()) for line in (folder / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    for number, line in enumerate((folder / "harm.txt").read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        label, _, text = line.partition("\t")
        if label not in HARM_LABELS or not text.strip():
            raise ValueError(f"harm.txt line {number}: expected 'category<TAB>request' with a known category")
        rows.append((label, text.strip()))
    return rows


@dataclass(frozen=True)
class SemanticReading:
    """The heads' probabilities for one message, and what they cross."""

    crisis_p: float
    concern_p: float
    harm_p: dict[str, float]  # each harm category's probability (the rest is `none`)
    crisis_threshold: float
    concern_threshold: float

    @property
    def crisis(self) -> bool:
        return self.crisis_p >= self.crisis_threshold

    @property
    def concern(self) -> bool:
        return not self.crisis and self.concern_p >= self.concern_threshold

    @property
    def harm_total(self) -> float:
        """How likely the message is a harmful request of any category (1 - p(none))."""
        return sum(self.harm_p.values())

    @property
    def harm(self) -> tuple[str, ...]:
        """The most likely harm category, when the message is likely harmful at all."""
        if self.harm_total < HARM_FLAG or not self.harm_p:
            return ()
        return (max(self.harm_p, key=self.harm_p.__getitem__),)

    @property
    def harmless(self) -> bool:
        """Surely not a harmful request: the offline rules' harm flags are set aside (not self-harm)."""
        return self.harm_total < HARM_CLEAR

    def reason(self, label: str) -> str:
        p = {"crisis": self.crisis_p, "concern": self.concern_p}.get(label, self.harm_p.get(label, 0.0))
        return f"semantic:{label}:{p:.2f}"


def _sigmoid(value: float) -> float:
    return float(1.0 / (1.0 + np.exp(-value)))


def _network(arrays: dict[str, np.ndarray], name: str, v: np.ndarray) -> np.ndarray:
    """The logits of a one-hidden-layer ReLU network stored as `{name}_w1/_b1/_w2/_b2`."""
    hidden = np.maximum(arrays[f"{name}_w1"] @ v + arrays[f"{name}_b1"], 0.0)
    return arrays[f"{name}_w2"] @ hidden + arrays[f"{name}_b2"]


@dataclass(frozen=True)
class Head:
    """The heads tools/build_safety_head.py fits (see its docstring); `lexical`, the crisis head's
    second view, when the file has one."""

    arrays: dict[str, np.ndarray]
    embedder: str
    lexical: LexicalHead | None = None

    @classmethod
    def load(cls, path: Path = HEAD_PATH) -> Head:
        with np.load(path) as data:
            arrays = {key: data[key] for key in data.files}
        lexical = None
        if "lexical_vocabulary" in arrays:
            lexical = LexicalHead.from_arrays(
                [str(word) for word in arrays.pop("lexical_vocabulary")],
                [float(c) for c in arrays.pop("lexical_coef")],
                float(arrays.pop("lexical_intercept")),
            )
        return cls(arrays, str(arrays["embedder"]), lexical)

    def read(self, vector: list[float] | np.ndarray, text: str | None = None) -> SemanticReading:
        """The reading of a message from its embedding (and its text, for the lexical view)."""
        a, v = self.arrays, np.asarray(vector, dtype=np.float32)
        crisis = _sigmoid(float(_network(a, "crisis", v)[0]))
        if self.lexical is not None and text is not None:
            crisis = (crisis + self.lexical.crisis_p(text)) / 2
        concern = _sigmoid(float(a["concern_coef"][0] @ v + a["concern_intercept"][0]))
        logits = _network(a, "harm", v)
        exp = np.exp(logits - logits.max())
        harm = exp / exp.sum()
        labels = [str(label) for label in a["harm_labels"]][1:]  # [0] is none
        return SemanticReading(
            crisis,
            concern,
            {label: float(p) for label, p in zip(labels, harm[1:], strict=True)},
            float(a["crisis_threshold"]),
            float(a["concern_threshold"]),
        )


class SemanticDetector:
    """`read(text)`: the head's reading of a message, through the shared (caching) embedder."""

    def __init__(self, embedder: Embedder, head: Head | None = None) -> None:
        self.head = head or Head.load()
        if embedder.name not in COMPATIBLE_EMBEDDERS and embedder.name != self.head.embedder:
            raise ValueError(f"the safety head was trained on {self.head.embedder} vectors, not {embedder.name}")
        self.embedder = embedder

    async def read(self, text: str) -> SemanticReading:
        return self.head.read(await self.embedder.embed_query(text), text)


GUARDED_CRISIS = 0.9  # what the head needs alone where the rules saw an idiom, or someone else, a negation, the past
WEAK_CRISIS = 0.5  # what it needs beside an indirect sign the rules found (two weak signs make a crisis)


def combined_signal(text: str, history: list[str], reading: SemanticReading | None) -> CrisisSignal:
    """The rules' signal, raised by the head: to a crisis when it reads one (more surely where the
    rules found an idiom or a downgrade such as "my friend", "not", "years ago"), to a concern
    when it reads one. The rules' crisis always stands."""
    signal = detect(text, history)
    if reading is None or signal.level == "crisis":
        return signal
    guarded = has_idiom(text) or bool(set(signal.reasons) & DOWNGRADES)
    if reading.crisis and (not guarded or reading.crisis_p >= GUARDED_CRISIS):
        return CrisisSignal("crisis", (*signal.reasons, reading.reason("crisis")))
    if not guarded and reading.crisis_p >= WEAK_CRISIS and has_indirect_sign(text):
        return CrisisSignal("crisis", (*signal.reasons, reading.reason("crisis")))
    if signal.level == "none" and reading.concern:
        return CrisisSignal("concern", (reading.reason("concern"),))
    return signal
