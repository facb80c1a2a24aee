"""What a model step may spend, and what it cost: the budget check before the model is
called, and the cost of its tokens after (`sessionflow.budgets`, `sessionflow.prices`).

Both run in the model-step activity because that is where the agent's definition is:
its budgets and price overrides are the ones of the build the session runs on, and a
budget that a session has reached is checked again against them at every step, so no
stale copy in the workflow decides.
"""

from __future__ import annotations

from sessionflow.agents.definition import Agent
from sessionflow.budgets import BudgetReached, overridden, reached
from sessionflow.contract import ModelStepParams
from sessionflow.errors import PriceUnknown
from sessionflow.messages import Usage
from sessionflow.prices import PriceTable


def budget_reached(
    agent: Agent, params: ModelStepParams, model_id: str, prices: PriceTable
) -> BudgetReached | None:
    """The limit this step must not run past, if one is reached: the session's budget
    first (the agent's, with the session's own limits in place of its), then the
    turn's (the agent's, tightened by the send's). `PriceUnknown` when
    a cost limit applies and the model has no price."""
    turn = agent.turn_budget.tightened(params.turn_budget) if agent.turn_budget else None
    turn = turn or params.turn_budget
    session = overridden(agent.session_budget, params.session_budget)
    costed = any(b is not None and b.cost is not None for b in (turn, session))
    if costed and prices.price(model_id) is None:
        raise PriceUnknown(
            f"agent {agent.name!r} has a cost budget, and model {model_id!r} has no "
            "price to count it by: give it one with agent(prices={...}) or "
            "SESSIONFLOW_PRICES"
        )
    return reached(session, params.session_spent, "session") or reached(
        turn, params.turn_spent, "turn"
    )


def priced(usage: Usage, model_id: str, prices: PriceTable) -> Usage:
    """`usage` with its cost at the model's price (None when it has none)."""
    return usage.model_copy(update={"cost": prices.cost(model_id, usage)})
