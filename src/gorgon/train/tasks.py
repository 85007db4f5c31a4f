"""Task prompts built from the model's own answers: summarising, translating, answering from a passage.

Self-written (Magpie) questions from a small instruct model are mostly open questions; its answers are
what heads trained on them learn to predict. Users also ask a model to summarise a text, translate a
sentence or answer from a document, where the answer copies or transforms the prompt: a drafter that
never saw such answers drafts them poorly (the first heads accepted 0.28 of translation drafts against
0.84 on chat). The model's own answers are ready-made passages for those tasks: each (question, answer)
pair of the first distillation pass becomes a task prompt, and the model's answer to it joins the data.
"""

from __future__ import annotations

import random
import re

LANGUAGES = ("French", "Spanish", "German", "Italian", "Portuguese")
SUMMARIZE = (
    "Summarize the following text in a few sentences.",
    "Summarize the text below in a few sentences, reusing its wording.",
    "Write a short summary of this passage.",
    "Give a two-sentence summary of the following.",
)
ANSWER_FROM = (
    "Answer using only the text below: {q}",
    "Using only the passage below, answer this question: {q}",
    "Read the text and answer: {q}",
)
TRANSFORM = (
    "List the key points of the text below.",
    "Rewrite the following text in simpler words.",
    "Extract the three most important facts from this text.",
)
# (kind, weight): translation prompts are short, so they come more often than their share of tokens
MIX = (("translate", 0.35), ("summarize", 0.25), ("answer", 0.25), ("transform", 0.15))
MAX_PASSAGE = 1200  # characters: a passage of ~250 tokens keeps prompts well inside the context


def sentences(text: str) -> list[str]:
    """Whole sentences of plain prose (no code, lists or markup) that are worth translating."""
    parts = re.split(r"(?<=[.!?])\s+", text.replace("\n", " "))
    ok = lambda s: 30 <= len(s) <= 220 and s[0].isupper() and not re.search(r"[`#*|<>{}\[\]=_\\]", s)
    return [s.strip() for s in parts if s.strip() and ok(s.strip())]


def passage(text: str) -> str | None:
    """The answer cut to at most MAX_PASSAGE characters at a paragraph or sentence end; None if short."""
    text = text.strip()
    if len(text) < 300:
        return None
    if len(text) <= MAX_PASSAGE:
        return text
    cut = text[:MAX_PASSAGE]
    end = max(cut.rfind("\n\n"), cut.rfind(". "))
    return cut[: end + 1].strip() if end > 300 else cut.strip()


def task_prompts(pairs: list[tuple[str, str]], count: int, seed: int = 0) -> list[str]:
    """Up to `count` distinct task prompts from (question, answer) pairs, in the proportions of MIX."""
    rng = random.Random(seed)
    kinds, weights = zip(*MIX, strict=True)
    order = list(range(len(pairs)))
    out: list[str] = []
    seen: set[str] = set()
    for _ in range(4):  # a few passes over the pairs: each pass draws new kinds and sentences
        rng.shuffle(order)
        for i in order:
            if len(out) >= count:
                return out
            prompt = _make(rng.choices(kinds, weights)[0], *pairs[i], rng)
            if prompt is not None and prompt not in seen:
                seen.add(prompt)
                out.append(prompt)
    return out


def _make(kind: str, question: str, answer: str, rng: random.Random) -> str | None:
    if kind == "translate":
        found = sentences(answer)
        return f"Translate into {rng.choice(LANGUAGES)}: {rng.choice(found)}" if found else None
    text = passage(answer)
    if text is None:
        return None
    if kind == "summarize":
        return f"{rng.choice(SUMMARIZE)}\n\n{text}"
    if kind == "answer":
        return f"{rng.choice(ANSWER_FROM).format(q=question.strip())}\n\n{text}"
    return f"{rng.choice(TRANSFORM)}\n\n{text}"
