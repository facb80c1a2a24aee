"""Payloads belong to sessions: each session's objects live under a namespace of its own,
so deleting a session can find them and erase them.

A session's namespace is the SHA-256 of its workflow id (hex): fixed length, no
characters a path or key could misread, the same for every run of the session. A
payload is stored in the namespace of the workflow the SDK's store context names
(`StorageDriverStoreContext.target`): the Temporal SDK names the workflow for
everything a workflow's worker encodes (commands, activity inputs, continue-as-new
input, query and update answers), for the results of activities a workflow started,
and for what a client sends to a workflow (start input, signals, updates). Transcript
segments name it themselves (`TranscriptStore`). Payloads stored with no workflow in
their context keep the global, content-addressed layout of before, as do references
written before namespaces existed: a reference names its namespace (or none), so old
references keep resolving.

Layout (file store; the S3 store uses the same keys under its prefix):

    <root>/sha256/<2 hex>/<64 hex>                   payloads of no session
    <root>/sessions/<ns>/sha256/<2 hex>/<64 hex>      the session's payloads
    <root>/sessions/<ns>/holds/<other ns>             another session's hold on them
    <root>/sessions/<ns>/erased                       erased while held (see below)
    <root>/sessions/<ns>/borrows/<other ns>           a hold this session placed

Forks: a fork is a new session whose transcript starts from its parent's segments, by
reference, without copying them (`TranscriptStore.cut`, `workflows.forks`). Before its
first reference to them is written, the fork places a hold on the parent's namespace
(`holds/<fork's ns>`, an empty marker), and on every namespace the parent itself
borrows from (a fork of a fork refers to its grandparent's segments too), recording
each in its own `borrows/`; it removes those holds when it is erased itself. Erasing a
namespace that holds markers deletes nothing but marks it `erased`: the parent is gone
for its users (its workflow, Redis keys and every reference but the fork's), while its
segments stay for the fork. When the last hold is removed from a namespace marked
`erased`, the namespace is deleted then (`FileStorageDriver._erase`). So deleting a
parent never breaks a fork, and deleting the fork finally frees the parent. A new
session under a deleted one's id writes into the same namespace, which is then live
again (its first write removes the mark): the old segments stay until it is deleted.
Holds, erasures and releases take a lock on the store (`flock` on `<root>/sessions`), so a
hold never slips between an erase's look for holds and its delete. The S3 store has no
`flock`: it takes a lock object with a conditional write, and marks namespaces it is
deleting (`storage.s3_namespaces`, `storage.s3_lock`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from temporalio.converter import (
    StorageDriverClaim,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
)

SESSIONS_DIR = "sessions"
HOLDS_DIR = "holds"
BORROWS_DIR = "borrows"
ERASED_MARK = "erased"
# The claim field naming a payload's namespace (absent: the global layout).
NAMESPACE_CLAIM = "session"


def session_namespace(workflow_id: str) -> str:
    """The namespace of the session whose workflow id is `workflow_id`."""
    return hashlib.sha256(workflow_id.encode()).hexdigest()


def is_namespace(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def namespace_of(context: StorageDriverStoreContext) -> str | None:
    """The namespace a payload stored in `context` belongs to: its workflow's, if the
    context names one."""
    target = context.target
    if isinstance(target, StorageDriverWorkflowInfo) and target.id:
        return session_namespace(target.id)
    return None


def session_context(workflow_id: str, namespace: str = "") -> StorageDriverStoreContext:
    """A store context naming the session's workflow (`namespace` is Temporal's)."""
    return StorageDriverStoreContext(
        target=StorageDriverWorkflowInfo(namespace=namespace, id=workflow_id)
    )


@runtime_checkable
class SessionHolds(Protocol):
    """A payload store driver that keeps a session's payloads for its forks."""

    async def hold(
        self,
        workflow_id: str,
        fork_workflow_id: str,
        *,
        keep: Sequence[StorageDriverClaim] = (),
    ) -> None:
        """Hold the session's namespace and those it borrows for the fork. `keep`: this
        driver's claims the fork refers to (its transcript's head); the hold is refused
        (`SessionNotFound`) if one is gone, so a hold that comes after the session was
        deleted never leaves the fork with deleted segments."""
        ...


@runtime_checkable
class SessionErasure(Protocol):
    """A payload store driver that can erase a session's namespace."""

    async def erase_session(self, workflow_id: str) -> bool:
        """Delete every payload of the session; False when another session holds them
        (they are marked erased and go when the last hold does)."""
        ...
