"""For operators: `/healthz` for load balancers and uptime checks, `/metrics` for Prometheus.

Neither needs the editor's login: they show counts and states, never an address.
`/healthz` is always open (a load balancer asks it; it shows no counts). `/metrics`
answers only `Authorization: Bearer <METRICS_TOKEN>` when that setting is set, and
anyone who reaches it when it is empty: then keep it behind the proxy's access rules.
"""

from __future__ import annotations

import hmac
import logging

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.errors import StoreError
from newsletter.metrics import CONTENT_TYPE, render_metrics
from newsletter.scheduler import LOCK_NAME, STALE_AFTER
from newsletter.store import stats
from newsletter.store.engine import utcnow
from newsletter.store.locks import read_lock

log = logging.getLogger("newsletter.web")
_NO_CACHE = {"Cache-Control": "no-store"}


def scheduler_state(engine: Engine) -> tuple[str, float | None]:
    """("running" | "stopped", seconds since its last heartbeat, or None when no lock is held).

    Running means a `newsletter run` holds the scheduler lock and beat within
    STALE_AFTER; a lock left by a dead scheduler reads as stopped.
    """
    holder = read_lock(engine, LOCK_NAME)
    if holder is None:
        return "stopped", None
    age = (utcnow() - holder.heartbeat_at).total_seconds()
    return ("running" if age <= STALE_AFTER.total_seconds() else "stopped"), age


def healthz(request: Request) -> Response:
    """200 with the database and scheduler states; 503 when the database does not answer
    or a page template does not load (every page using it would answer 500)."""
    broken = request.app.state.pages.broken()
    if broken:
        log.error("health check: page templates do not load: %s", "; ".join(broken))
        body = {"database": "unknown", "templates": "broken", "broken": broken}
        return JSONResponse(body, status_code=503, headers=_NO_CACHE)
    engine = request.app.state.engine
    try:
        stats.ping(engine)
        scheduler, age = scheduler_state(engine)
    except (SQLAlchemyError, StoreError) as exc:
        log.error("health check: the database did not answer: %s", exc)
        body = {"database": "unreachable", "scheduler": "unknown"}
        return JSONResponse(body, status_code=503, headers=_NO_CACHE)
    body: dict[str, object] = {"database": "ok", "scheduler": scheduler}
    if age is not None:
        body["scheduler_heartbeat_age_seconds"] = round(age, 1)
    return JSONResponse(body, headers=_NO_CACHE)


def metrics_allowed(request: Request) -> bool:
    """Whether the request may read /metrics: always when METRICS_TOKEN is empty, else
    only with `Authorization: Bearer <token>`, compared in constant time (no timing
    of the comparison tells how much of a guess was right)."""
    token = request.app.state.settings.metrics_token.get_secret_value()
    if not token:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def metrics(request: Request) -> Response:
    """Prometheus text format. A database that does not answer is `newsletter_database_up 0`
    (still 200, so the scrape itself, `up`, stays a statement about this process).
    Without the token (when METRICS_TOKEN is set): 401 and `WWW-Authenticate: Bearer`."""
    if not metrics_allowed(request):
        return PlainTextResponse(
            "a bearer token is needed (METRICS_TOKEN)\n",
            status_code=401,
            headers={**_NO_CACHE, "WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    engine = request.app.state.engine
    try:
        snapshot = stats.snapshot(engine, today=request.app.state.settings.today())
        running = scheduler_state(engine)[0] == "running"
    except (SQLAlchemyError, StoreError) as exc:
        log.error("metrics: the database did not answer: %s", exc)
        snapshot, running = None, None
    zone = request.app.state.settings.zone
    text = render_metrics(snapshot, scheduler_running=running, zone=zone)
    return PlainTextResponse(text, media_type=CONTENT_TYPE, headers=_NO_CACHE)


ROUTES: list[BaseRoute] = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
]
