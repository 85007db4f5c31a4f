"""Self-distillation data: the target answers questions, and its answers are what the heads learn.

Questions come from a prompt file or, without one, from the model itself (Magpie): given only the chat
template's opening of a user turn, an instruct model writes a plausible user question. Generation is
batched through the engine, sampled at a moderate temperature for variety; duplicates are dropped.
With `tasks`, the answers also become passages of task prompts (summarise, translate, answer from the
text), which the model answers in a second pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tqdm import tqdm

from gorgon.config import SamplingParams
from gorgon.errors import GorgonError
from gorgon.llm import LLM
from gorgon.train.data import TokenDataset, read_prompts
from gorgon.train.tasks import task_prompts

_SENTINEL = "\x00gorgon-magpie\x00"


@dataclass
class DistillConfig:
    num_samples: int = 1000
    prompts: str | None = None  # a JSONL or text file; None: the model writes its own questions
    batch_size: int = 64
    max_question_tokens: int = 96
    max_tokens: int = 256
    temperature: float = 0.7
    question_temperature: float = 1.0
    top_p: float = 0.95
    seed: int = 0
    tasks: int = 0  # task prompts made from the answers (gorgon.train.tasks), answered too


def magpie_prefix(llm: LLM) -> list[int]:
    """Token ids of the chat template up to where a user's message would start."""
    if not llm.tokenizer.chat_template:
        raise GorgonError("self-written questions need a chat template; pass a prompt file (--prompts)")
    text = llm.tokenizer.apply_chat_template(
        [{"role": "user", "content": _SENTINEL}], add_generation_prompt=False
    )
    return llm.tokenizer.encode(text.split(_SENTINEL)[0], add_special_tokens=False)


def _normal(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower())


def write_questions(llm: LLM, cfg: DistillConfig, bar: tqdm | None = None) -> list[str]:
    """`num_samples` distinct questions the model writes itself."""
    prefix = magpie_prefix(llm)
    seen: set[str] = set()
    questions: list[str] = []
    seed, tries = cfg.seed, 0
    while len(questions) < cfg.num_samples:
        params = [
            SamplingParams(
                max_tokens=cfg.max_question_tokens,
                temperature=cfg.question_temperature,
                top_p=cfg.top_p,
                seed=seed + i,
            )
            for i in range(cfg.batch_size)
        ]
        seed += cfg.batch_size
        for out in llm.generate([prefix] * cfg.batch_size, params):
            text = out.text.strip()
            # finished questions only (the model ended its turn), of a sensible length, not seen before
            if out.finish_reason != "stop" or not 8 <= len(text) <= 600 or _normal(text) in seen:
                continue
            seen.add(_normal(text))
            questions.append(text)
            if bar is not None:
                bar.update(1)
        tries += 1
        if tries > 50 and not questions:
            raise GorgonError("the model wrote no usable questions; pass a prompt file (--prompts)")
    return questions[: cfg.num_samples]


def distill(llm: LLM, cfg: DistillConfig, progress: bool = True) -> TokenDataset:
    """Questions (from cfg.prompts or the model) and the model's answers, as token sequences; then, with
    cfg.tasks, task prompts made from those answers (`gorgon.train.tasks`) and the model's answers to
    them."""
    if cfg.prompts:
        questions = read_prompts(cfg.prompts)[: cfg.num_samples]
    else:
        with tqdm(total=cfg.num_samples, desc="questions", disable=not progress) as bar:
            questions = write_questions(llm, cfg, bar)
    chats = [q if isinstance(q, list) else [{"role": "user", "content": q}] for q in questions]
    data = TokenDataset([], [], {"target": target_fingerprint(llm), "temperature": str(cfg.temperature),
                                 "seed": str(cfg.seed)})  # fmt: skip
    answers = _answer(llm, cfg, chats, data, "answers", progress)
    if cfg.tasks:
        pairs = [(c[-1]["content"], a) for c, a in zip(chats, answers, strict=True) if a]
        tasks = task_prompts(pairs, cfg.tasks, cfg.seed)
        _answer(llm, cfg, [[{"role": "user", "content": t}] for t in tasks], data, "tasks", progress, 10**7)
        data.meta["tasks"] = str(len(tasks))
    return data


def _answer(
    llm: LLM, cfg: DistillConfig, chats: list[list[dict]], data: TokenDataset, desc: str, progress: bool,
    seed_offset: int = 10**6,
) -> list[str]:  # fmt: skip
    """Generate the model's answers to `chats` into `data` (dropping empty and repeated conversations);
    returns each answer's text ("" where dropped)."""
    prompts = [llm.tokenizer.apply_chat_template(c, tokenize=True) for c in chats]
    seen = {tuple(s) for s in data.sequences}
    texts = []
    with tqdm(total=len(prompts), desc=desc, disable=not progress) as bar:
        for start in range(0, len(prompts), cfg.batch_size):
            chunk = prompts[start : start + cfg.batch_size]
            params = [
                SamplingParams(
                    max_tokens=cfg.max_tokens,
                    temperature=cfg.temperature,
                    top_p=cfg.top_p,
                    seed=cfg.seed + seed_offset + start + i,
                )
                for i in range(len(chunk))
            ]
            for prompt, out in zip(chunk, llm.generate(chunk, params)):
                key = tuple(prompt + out.token_ids)
                keep = bool(out.token_ids) and key not in seen
                if keep:
                    seen.add(key)
                    data.sequences.append(prompt + out.token_ids)
                    data.prompt_lengths.append(len(prompt))
                texts.append(out.text if keep else "")
            bar.update(len(chunk))
    return texts


def target_fingerprint(llm: LLM) -> str:
    """A short string identifying the target's weights (shape and a checksum of a few of them)."""
    from gorgon.heads.base import fingerprint

    return fingerprint(llm.model)
