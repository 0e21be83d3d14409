"""The login throttle: attempts counted before they are evaluated, per client and overall.

In memory, for the one server process `newsletter serve` runs; `editor_auth.py`
asks it before every password check and tells it the outcome after.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.requests import Request


@dataclass
class Admission:
    """The outcome of `LoginThrottle.admit`: evaluate the password, or wait `wait` seconds."""

    wait: float
    key: str = ""
    overall: bool = False  # counted against the overall cap (no device cookie)
    busy: bool = False  # refused because enough passwords are being checked right now


@dataclass
class LoginThrottle:
    """Login attempts, counted before they are evaluated, per client and overall.

    * Every attempt is recorded by `admit` *before* the password is checked, in
      one synchronous call (no await between the check and the record: the
      event loop runs nothing else meanwhile), so 100 concurrent guesses cannot
      all pass a check none of them has been recorded in yet.
    * Per client (`proxy.client_address`): at most `per_client` attempts in
      `window` seconds; a success forgets that client's count.
    * Overall: at most `overall` attempts per window from all clients together,
      and at most `concurrent` password checks at once, so forged or rotating
      addresses buy no more guesses (nor pbkdf2 CPU time) than that.
    * A browser that logged in before carries a signed device cookie (OWASP's
      "device cookie" pattern): its attempts are counted per device, and not
      against the per-client or overall counts an attacker fills, so guessing
      from the editor's own network or proxy does not lock the editor out.

    Kept in memory (one server process): a restart forgets it, which only helps
    the real editor. The dict stays bounded: only admitted attempts are
    recorded, at most `overall` per window besides devices, and stale keys go.
    """

    per_client: int = 10
    overall: int = 30
    window: float = 600.0
    concurrent: int = 2
    clock: Callable[[], float] = time.monotonic
    attempts: dict[str, deque[float]] = field(default_factory=dict)
    everyone: deque[float] = field(default_factory=deque)
    running: int = 0

    def admit(self, client: str, device: str | None) -> Admission:
        """Record an attempt now and say whether to evaluate it (wait 0) or refuse it."""
        now = self.clock()
        key = f"device:{device}" if device else f"client:{client}"
        mine = self._recent(key, now)
        if len(mine) >= self.per_client:
            return Admission(self.window - (now - mine[0]))
        if device is None:
            while self.everyone and now - self.everyone[0] >= self.window:
                self.everyone.popleft()
            if len(self.everyone) >= self.overall:
                return Admission(self.window - (now - self.everyone[0]))
            if self.running >= self.concurrent:
                return Admission(1.0, busy=True)
            self.everyone.append(now)
            self.running += 1
        mine.append(now)
        self.attempts[key] = mine
        return Admission(0.0, key, overall=device is None)

    def finished(self, admission: Admission, *, ok: bool) -> None:
        """The password was checked: free its slot; a success forgets its key's count."""
        if admission.overall:
            self.running -= 1
        if ok:
            self.attempts.pop(admission.key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        if len(self.attempts) > 2 * self.overall + 1000:  # sweep keys whose window passed
            stale = [k for k, times in self.attempts.items() if now - times[-1] >= self.window]
            for old in stale:
                del self.attempts[old]
        mine = self.attempts.get(key, deque())
        while mine and now - mine[0] >= self.window:
            mine.popleft()
        return mine


def throttle_of(request: Request) -> LoginThrottle:
    state = request.app.state
    if getattr(state, "login_throttle", None) is None:
        settings = state.settings
        state.login_throttle = LoginThrottle(
            per_client=settings.login_attempts_per_client,
            overall=settings.login_attempts_overall,
            window=settings.login_window_minutes * 60,
        )
    return state.login_throttle
