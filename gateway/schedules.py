"""`/v1/sessions/{id}/schedules` and `/v1/schedules`: a tenant's scheduled messages
(Temporal Schedules), scoped like its sessions: a schedule belongs to one session, and
a tenant sees and changes only its own sessions' schedules."""

from __future__ import annotations

from fastapi import APIRouter, Response

from sessionflow.client import ScheduleInfo
from sessionflow.gateway.bodies import JsonBodyRoute
from sessionflow.gateway.models import ScheduleBody, ScheduleResponse, SchedulesResponse
from sessionflow.gateway.tenancy import Client, NamedSession, Tenant

router = APIRouter(route_class=JsonBodyRoute)


def _row(info: ScheduleInfo, owner: str) -> ScheduleResponse:
    return ScheduleResponse(
        name=info.name,
        session_id=info.session_id.removeprefix(f"{owner}:"),
        agent=info.agent,
        message=info.message,
        every=info.every.total_seconds() if info.every is not None else None,
        cron=info.cron,
        if_busy=info.if_busy,
        paused=info.paused,
        note=info.note,
        next_runs=[t.isoformat() for t in info.next_runs],
        last_run=info.last_run.isoformat() if info.last_run else None,
    )


@router.get("/v1/schedules")
async def all_schedules(owner: Tenant, client: Client) -> SchedulesResponse:
    """Every schedule of the tenant's sessions (Temporal's listing lags a moment)."""
    rows = await client.schedules.list(prefix=f"{owner}:")
    return SchedulesResponse(schedules=[_row(r, owner) for r in rows])


@router.post("/v1/sessions/{session_id}/schedules", status_code=201)
async def create(session: NamedSession, owner: Tenant, body: ScheduleBody) -> ScheduleResponse:
    """Send `message` to the session every `every` or on `cron`."""
    handle = await session.schedule(
        body.message,
        every=body.every,
        cron=body.cron,
        name=body.name,
        if_busy=body.if_busy,
        paused=body.paused,
    )
    return _row(await handle.describe(), owner)


@router.get("/v1/sessions/{session_id}/schedules")
async def session_schedules(session: NamedSession, owner: Tenant) -> SchedulesResponse:
    return SchedulesResponse(schedules=[_row(r, owner) for r in await session.schedules()])


@router.get("/v1/sessions/{session_id}/schedules/{name}")
async def describe(session: NamedSession, owner: Tenant, name: str) -> ScheduleResponse:
    return _row(await session.get_schedule(name).describe(), owner)


@router.post("/v1/sessions/{session_id}/schedules/{name}/pause")
async def pause(session: NamedSession, name: str) -> dict[str, bool]:
    await session.get_schedule(name).pause()
    return {"paused": True}


@router.post("/v1/sessions/{session_id}/schedules/{name}/resume")
async def resume(session: NamedSession, name: str) -> dict[str, bool]:
    await session.get_schedule(name).resume()
    return {"paused": False}


@router.post("/v1/sessions/{session_id}/schedules/{name}/trigger", status_code=202)
async def trigger(session: NamedSession, name: str) -> dict[str, bool]:
    """Fire once now."""
    await session.get_schedule(name).trigger()
    return {"triggered": True}


@router.delete(
    "/v1/sessions/{session_id}/schedules/{name}", status_code=204, response_class=Response
)
async def delete(session: NamedSession, name: str) -> Response:
    await session.get_schedule(name).delete()
    return Response(status_code=204)
