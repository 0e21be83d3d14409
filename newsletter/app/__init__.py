"""The application layer: one function per use case, each with typed outcomes.

    build.py     prepare_edition, rebuild, render_fresh, day_articles: read the source
                 once, render once, store with the warnings and skipped files
    publish.py   prepare_send + deliver = publish: held? sent? queue, then the send
                 loop (through `delivery.run_send` alone), in one process or N
    workers.py   `--workers N`: the helper processes of one send
    control.py   hold, unhold, retry
    preview.py   preview (a recipient's exact bytes, warnings, notes), send_test
    overview.py  plan (the dry run), the dashboard, one edition's state, status
    health.py    bounce and complaint rates, the complaint block, the send's pause guard
    outcomes.py  every outcome above, as frozen values

`newsletter` (cli/), the scheduler and the editor's pages call these and only
translate what they return into lines, log records and pages. Each function
takes its backends as parameters (the engine, the settings, and for a send its
stop event and progress callback), so a test can hand in its own.
"""

from newsletter.app.build import (
    UNSENT,
    Fresh,
    day_articles,
    prepare_edition,
    rebuild,
    render_fresh,
    source_dates,
)
from newsletter.app.control import hold, retry, unhold
from newsletter.app.health import (
    RECENT_EDITIONS,
    WINDOW_DAYS,
    PauseGuard,
    SenderHealth,
    complaint_block,
    sender_health,
)
from newsletter.app.outcomes import (
    AlreadySent,
    Built,
    Changed,
    ComplaintRate,
    DeliverOutcome,
    Held,
    HoldOutcome,
    InvalidAddress,
    NoArticles,
    Paused,
    Planned,
    Prepared,
    PublishOutcome,
    Ready,
    RebuildOutcome,
    Rebuilt,
    Refusal,
    Refused,
    Requeued,
    SendStart,
    Sent,
    Stopped,
    TestSent,
    TooManyComplaints,
    Unchanged,
)
from newsletter.app.overview import (
    DASHBOARD_DAYS,
    Dashboard,
    DayRow,
    EditionReport,
    EditionState,
    active_subscribers,
    dashboard,
    edition_report,
    edition_state,
    plan,
    recent_editions,
)
from newsletter.app.preview import SAMPLE_RECIPIENT, Preview, message_parts, preview, send_test
from newsletter.app.publish import (
    StartedBy,
    check_sending,
    deliver,
    prepare_send,
    publish,
    real_recipient,
    run_stoppable,
    send_edition,
    start_send,
)

__all__ = [
    "DASHBOARD_DAYS",
    "RECENT_EDITIONS",
    "SAMPLE_RECIPIENT",
    "UNSENT",
    "WINDOW_DAYS",
    "AlreadySent",
    "Built",
    "Changed",
    "ComplaintRate",
    "Dashboard",
    "DayRow",
    "DeliverOutcome",
    "EditionReport",
    "EditionState",
    "Fresh",
    "Held",
    "HoldOutcome",
    "InvalidAddress",
    "NoArticles",
    "Paused",
    "PauseGuard",
    "Planned",
    "Prepared",
    "Preview",
    "PublishOutcome",
    "Ready",
    "RebuildOutcome",
    "Rebuilt",
    "Refusal",
    "Refused",
    "Requeued",
    "SendStart",
    "SenderHealth",
    "Sent",
    "StartedBy",
    "Stopped",
    "TestSent",
    "TooManyComplaints",
    "Unchanged",
    "active_subscribers",
    "check_sending",
    "complaint_block",
    "dashboard",
    "day_articles",
    "deliver",
    "edition_report",
    "edition_state",
    "hold",
    "message_parts",
    "plan",
    "prepare_edition",
    "prepare_send",
    "preview",
    "publish",
    "real_recipient",
    "rebuild",
    "recent_editions",
    "render_fresh",
    "retry",
    "run_stoppable",
    "send_edition",
    "send_test",
    "sender_health",
    "source_dates",
    "start_send",
    "unhold",
]
