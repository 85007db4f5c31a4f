"""What the WebSocket stream says about each step: its candidate tree, which nodes were accepted, and
the request's speed so far against plain decoding (measured when the server started)."""

from __future__ import annotations

import time

from gorgon.engine import TokenEvent
from gorgon.model.tokenizer import Tokenizer


class TreeView:
    def __init__(self, tokenizer: Tokenizer, method: str, plain_tokens_per_s: float | None):
        self.tokenizer, self.method, self.plain = tokenizer, method, plain_tokens_per_s
        self.steps = 0
        self.tokens = 0
        self.first: float | None = None  # when the first token (from prefill) arrived

    def step(self, event: TokenEvent) -> dict:
        """tree_debug for one step: nodes [{id, parent, token, depth, accepted, bonus}], accepted ids (root
        first, the bonus token last), tokens/s so far (decoding, after the first token) and the speedup
        over plain decoding (None when it was not measured)."""
        now = time.perf_counter()
        if self.first is None:
            self.first = now
        else:
            self.tokens += len(event.token_ids)
        self.steps += 1
        nodes = self._nodes(event)
        tokens_per_s = self.tokens / (now - self.first) if now > self.first and self.tokens else 0.0
        speedup = tokens_per_s / self.plain if self.plain and tokens_per_s else None
        return {
            "step": self.steps,
            "method": self.method,
            # "tree": node 0 is the last committed token (the previous step's bonus), drafted nodes hang
            # from it; "chain": the emitted tokens in order (prefill's first token, plain decoding)
            "kind": "chain" if event.tree is None else "tree",
            "nodes": nodes,
            "accepted": [n["id"] for n in nodes if n["accepted"]],
            "tokens_per_s": tokens_per_s,
            "speedup": speedup,
        }

    def _text(self, token: int) -> str:
        return self.tokenizer.decode([token])

    def _nodes(self, event: TokenEvent) -> list[dict]:
        tree = event.tree
        if tree is None:  # prefill's token, or plain decoding: a chain of what was emitted
            return [
                self._node(i, i - 1, t, i, True, bonus=i == len(event.token_ids) - 1)
                for i, t in enumerate(event.token_ids)
            ]
        accepted = set(tree.accepted)
        nodes = [
            self._node(i, p, t, d, i in accepted)
            for i, (t, p, d) in enumerate(zip(tree.tokens, tree.parents, tree.depths))
            if i == 0 or p >= 0
        ]
        last = tree.accepted[-1]
        nodes.append(self._node(len(tree.tokens), last, tree.bonus, tree.depths[last] + 1, True, bonus=True))
        return nodes

    def _node(self, i: int, parent: int, token: int, depth: int, accepted: bool, bonus: bool = False) -> dict:
        return {"id": i, "parent": parent, "token": self._text(token), "depth": depth, "accepted": accepted,
                "bonus": bonus}  # fmt: skip
