"""Search attributes that make sessions findable in the Temporal UI and CLI.

Register them once per namespace (`sessionflow dev` does it for the local server):

    temporal operator search-attribute create --namespace default \\
        --name SessionAgent --type Keyword --name SessionTenant --type Keyword \\
        --name SessionStatus --type Keyword \\
        --name SessionTokens --type Int --name SessionPendingApprovals --type Int \\
        --name SessionLastActivity --type Datetime

then, for example: `temporal workflow list --query 'SessionStatus="needs-approval"'`
or `'SessionTenant="acme" AND SessionAgent="assistant"'`. `SessionTenant` is the
session id's tenant (`acme` of `acme:order-chat`, as the gateway and the CLI's
`--tenant` make them), set only on sessions that have one.

A session upserts them as a turn starts and ends and as approvals are asked for and
answered, not per step: each upsert is a visibility write, the costliest thing a turn
asks of the server (BENCHMARKS.md, server work). A running tool is `streaming` here.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

AGENT = SearchAttributeKey.for_keyword("SessionAgent")
TENANT = SearchAttributeKey.for_keyword("SessionTenant")
STATUS = SearchAttributeKey.for_keyword("SessionStatus")
TOKENS = SearchAttributeKey.for_int("SessionTokens")
PENDING_APPROVALS = SearchAttributeKey.for_int("SessionPendingApprovals")
LAST_ACTIVITY = SearchAttributeKey.for_datetime("SessionLastActivity")

# name -> type, as `temporal operator search-attribute create` and start-dev take them.
REGISTRATION = {
    AGENT.name: "Keyword",
    TENANT.name: "Keyword",
    STATUS.name: "Keyword",
    TOKENS.name: "Int",
    PENDING_APPROVALS.name: "Int",
    LAST_ACTIVITY.name: "Datetime",
}
