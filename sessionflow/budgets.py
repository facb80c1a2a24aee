"""Budgets: limits on what a session, or one turn, may spend on its model.

A budget caps input tokens, output tokens and cost (US dollars, from the price table:
`sessionflow.prices`), each optional. An agent sets one for the whole session
(`session_budget=`) and one for every turn (`turn_budget=`); a send may give its turn
a budget too, which can only tighten the agent's (field by field, the lower limit
wins), so a caller over HTTP cannot lift a limit the agent's author set.

Budgets are checked before every model step, in the model-step activity, against what
the workflow says was spent so far: a step whose session or turn has reached a limit
does not call the model, and the turn ends with outcome `budget_exceeded`. The step
that crosses a limit runs to its end (its output is bounded by `max_output_tokens`),
so a turn stops at the first step boundary at or past the limit.

Input tokens count every prompt token: uncached input, cache writes and cache reads
(`Usage.total_input_tokens`). A cost limit needs a price for the model: a step whose
model has none fails the turn with `PriceUnknown` rather than run uncounted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from sessionflow.messages import Usage

BudgetScope = Literal["session", "turn"]
BudgetKind = Literal["input_tokens", "output_tokens", "cost"]


class Budget(BaseModel):
    """Limits on a session's or a turn's model use; unset fields do not limit."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input_tokens: int | None = Field(default=None, ge=1)
    output_tokens: int | None = Field(default=None, ge=1)
    # US dollars, as the price table counts them.
    cost: float | None = Field(default=None, gt=0)

    def tightened(self, other: Budget | None) -> Budget:
        """Each limit the lower of this budget's and `other`'s."""
        if other is None:
            return self
        return self._each(other, lambda a, b: b if a is None else a if b is None else min(a, b))

    def overridden_by(self, other: Budget) -> Budget:
        """Each limit `other` sets in place of this budget's (raised or lowered)."""
        return self._each(other, lambda a, b: a if b is None else b)

    def _each(
        self, other: Budget, pick: Callable[[float | None, float | None], float | None]
    ) -> Budget:
        """A budget whose every limit is `pick(this one's, other's)`."""
        return Budget(
            input_tokens=pick(self.input_tokens, other.input_tokens),
            output_tokens=pick(self.output_tokens, other.output_tokens),
            cost=pick(self.cost, other.cost),
        )


def overridden(agent: Budget | None, own: Budget | None) -> Budget | None:
    """A session's budget: the agent's, with each limit the session's own budget sets
    in its place (`update(session_budget=...)`, which may raise a limit as well as
    lower it)."""
    if own is None:
        return agent
    return own if agent is None else agent.overridden_by(own)


class Spent(BaseModel):
    """What a session or a turn has used so far, as a budget counts it. `cost` is the
    sum of the known costs (steps before a cost budget applied may have none)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0

    def add(self, usage: Usage) -> Spent:
        return Spent(
            input_tokens=self.input_tokens + usage.total_input_tokens,
            output_tokens=self.output_tokens + usage.output_tokens,
            cost=self.cost + (usage.cost or 0.0),
        )


class BudgetReached(BaseModel):
    """Which limit stopped a turn: the budget it belongs to, what it limits, the limit
    and what had been used."""

    scope: BudgetScope
    kind: BudgetKind
    limit: float
    used: float

    def text(self) -> str:
        what = {
            "input_tokens": "input tokens",
            "output_tokens": "output tokens",
            "cost": "US dollars",
        }[self.kind]
        limit, used = (
            (f"{self.limit:.4f}", f"{self.used:.4f}")
            if self.kind == "cost"
            else (f"{self.limit:,.0f}", f"{self.used:,.0f}")
        )
        return (
            f"Stopped: this {self.scope}'s budget of {limit} {what} is reached ({used} used); "
            "the answer may be incomplete."
        )


def reached(budget: Budget | None, spent: Spent, scope: BudgetScope) -> BudgetReached | None:
    """The first limit of `budget` that `spent` has reached, or None."""
    if budget is None:
        return None
    checks: list[tuple[BudgetKind, float | None, float]] = [
        ("input_tokens", budget.input_tokens, spent.input_tokens),
        ("output_tokens", budget.output_tokens, spent.output_tokens),
        ("cost", budget.cost, spent.cost),
    ]
    for kind, limit, used in checks:
        if limit is not None and used >= limit:
            return BudgetReached(scope=scope, kind=kind, limit=limit, used=used)
    return None
