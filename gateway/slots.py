"""How many long-lived requests (SSE streams, outcome long-polls) a gateway process
holds, per tenant and in all, so one tenant cannot take every connection.

The rule, per process: a tenant gets a slot when
1. it holds fewer than `per_tenant` slots, and
2. fewer than `total` slots are held in all, and
3. more than `reserve` slots are free, or the tenant holds none.
So one tenant holds at most min(per_tenant, total - reserve) slots, however many it
asks for; the last `reserve` free slots go one each to tenants that hold none, and a
tenant that holds none gets one as long as any slot is free. `total` is kept below the
connection limit (`GatewayConfig.long_requests`), so short requests (sends, history,
approvals) always find a connection.

Over (1) or (3) the tenant is told 429 `too_many_streams`; over (2) the gateway is
full, 503 `server_busy`; both with `Retry-After` (`sessionflow.errors`).
"""

from __future__ import annotations

from sessionflow.errors import GatewayBusy, TooManyWaiting

# What a refused request is told to wait before trying again (s): streams end when
# their answer does, and long-polls within a minute.
RETRY_AFTER = 5.0


class Slot:
    """One long-lived request of a tenant; `release` (idempotent) gives it back."""

    def __init__(self, slots: Slots, tenant: str) -> None:
        self._slots = slots
        self._tenant = tenant
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots._release(self._tenant)


class Slots:
    """The long-lived requests each tenant holds in this process (see the module)."""

    def __init__(self, per_tenant: int, total: int, reserve: int = 0) -> None:
        if not 0 <= reserve < total:
            raise ValueError(f"the reserve ({reserve}) must be at least 0 and below {total}")
        self.per_tenant = per_tenant
        self.total = total
        self.reserve = reserve
        self._held: dict[str, int] = {}
        self._count = 0

    @property
    def held(self) -> int:
        """Slots held in all."""
        return self._count

    def take(self, tenant: str) -> Slot:
        """A slot for one more long-lived request of `tenant`, or `TooManyWaiting`
        (429) / `GatewayBusy` (503) as the module says."""
        mine = self._held.get(tenant, 0)
        if mine >= self.per_tenant:
            raise TooManyWaiting(
                f"this tenant already holds {mine} streams and long-polls open (the limit "
                "per tenant); close one or try again later",
                retry_after=RETRY_AFTER,
            )
        free = self.total - self._count
        if free <= 0:
            raise GatewayBusy(
                "the gateway holds as many streams and long-polls as it may; try again shortly",
                retry_after=RETRY_AFTER,
            )
        if free <= self.reserve and mine > 0:
            raise TooManyWaiting(
                f"this tenant holds {mine} streams and long-polls open, and the gateway's "
                "last free ones are kept for tenants that hold none; close one or try "
                "again later",
                retry_after=RETRY_AFTER,
            )
        self._held[tenant] = mine + 1
        self._count += 1
        return Slot(self, tenant)

    def _release(self, tenant: str) -> None:
        self._count -= 1
        left = self._held.get(tenant, 0) - 1
        if left > 0:
            self._held[tenant] = left
        else:
            self._held.pop(tenant, None)
