"""The send's waiting policies, driven by a fake clock: nothing here sleeps.

Backoff, the rate limiter, the relay watch and the store watch all take a
`Clock`; `FakeClock.sleep` only moves its time forward, so a test sees exactly
how long each would have waited.
"""

from __future__ import annotations

import asyncio
import random
import re

import pytest

from newsletter.delivery import RateLimiter, RelayWatch, StoreWatch, backoff
from newsletter.delivery.retry import first_of, sleep_or_stop
from newsletter.errors import DeliveryError, StoreError, StoreUnavailable


class FakeClock:
    """Time that moves only when someone sleeps; records each sleep."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)  # let other tasks run, as a real sleep would


def test_backoff_doubles_per_attempt_within_its_jitter():
    rng = random.Random(1)
    for attempt in range(1, 8):
        wait = backoff(2.0, attempt, rng)
        nominal = 2.0 * 2 ** (attempt - 1)
        assert 0.5 * nominal <= wait <= 1.5 * nominal


def test_the_rate_limiter_spaces_messages_on_its_clock():
    clock = FakeClock()
    limiter = RateLimiter(20, clock)
    start = clock.now

    async def take(n: int) -> None:
        for _ in range(n):
            await limiter.acquire()

    asyncio.run(take(20))  # the bucket holds one second's worth: no wait
    assert clock.now == start
    asyncio.run(take(10))  # then one token every 1/20 s
    assert clock.now - start == pytest.approx(0.5)
    assert all(s == pytest.approx(0.05) for s in clock.slept)


def test_a_rate_of_zero_never_waits():
    clock = FakeClock()
    limiter = RateLimiter(0, clock)

    async def take() -> None:
        for _ in range(1000):
            await limiter.acquire()

    asyncio.run(take())
    assert clock.slept == []


def test_the_relay_watch_waits_longer_the_longer_the_relay_is_down_then_stops(settings):
    clock = FakeClock()
    relay = settings.model_copy(update={"retry_delay": 1.0, "retry_window": 60.0})
    watch = RelayWatch(relay, clock)
    waits = []
    with pytest.raises(DeliveryError) as caught:
        for _ in range(1000):
            waits.append(watch.failed("connection refused"))
            clock.now += waits[-1]
    down_for = float(re.search(r"unreachable for (\d+)s", str(caught.value)).group(1))
    assert down_for >= 60 and "connection refused" in str(caught.value)
    assert 0.5 <= waits[0] <= 1.5  # RETRY_DELAY at first
    assert max(waits[-3:]) > 10  # half the downtime later on
    watch.ok()
    assert watch.down_since is None and 0.5 <= watch.failed("again") <= 1.5


class Flaky:
    """A store operation that is unavailable `failures` times, then answers."""

    def __init__(self, failures: int, error: StoreError | None = None) -> None:
        self.failures = failures
        self.calls = 0
        self.error = error or StoreUnavailable("the database is locked", where="test.db")

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "answer"


def test_the_store_watch_retries_an_unavailable_store_with_growing_waits():
    clock = FakeClock()
    watch = StoreWatch(120.0, clock=clock, base=0.25, cap=8.0, rng=random.Random(3))
    operation = Flaky(8)
    assert asyncio.run(watch.call(operation)) == "answer"
    assert operation.calls == 9 and len(clock.slept) == 8
    assert clock.slept[0] <= 0.375 and clock.slept[-1] > 2  # exponential
    assert max(clock.slept) <= 8.0  # capped
    assert watch.down_since is None  # answered again: the next failure starts a new window


def test_the_store_watch_gives_up_after_its_window_with_one_clear_error():
    clock = FakeClock()
    watch = StoreWatch(30.0, clock=clock, rng=random.Random(4))
    operation = Flaky(10_000)
    with pytest.raises(StoreUnavailable) as caught:
        asyncio.run(watch.call(operation))
    assert "unavailable for 30s" in str(caught.value)
    assert "the database is locked" in str(caught.value) and caught.value.where == "test.db"
    assert "NEWSLETTER_STORE_RETRY_WINDOW" in str(caught.value)
    assert sum(clock.slept) == pytest.approx(30.0)  # the last wait ends at the window


def test_a_permanent_store_error_is_not_retried():
    clock = FakeClock()
    watch = StoreWatch(120.0, clock=clock)
    operation = Flaky(1, StoreError("disk full: the database cannot grow", where="test.db"))
    with pytest.raises(StoreError, match="disk full"):
        asyncio.run(watch.call(operation))
    assert operation.calls == 1 and clock.slept == []


def test_tasks_waiting_for_the_store_together_share_one_window():
    clock = FakeClock()
    watch = StoreWatch(20.0, clock=clock, rng=random.Random(5))

    async def go() -> list[BaseException | str]:
        tasks = [watch.call(Flaky(10_000)) for _ in range(4)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(go())
    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert clock.now - 1000.0 <= 20.0 + 8.0  # one window, not four in a row


def test_a_stop_ends_the_store_watch_between_tries():
    clock = FakeClock()
    watch = StoreWatch(120.0, clock=clock)
    stop = asyncio.Event()
    operation = Flaky(10_000)

    async def go() -> None:
        async def stop_soon() -> None:
            while operation.calls < 3:
                await asyncio.sleep(0)
            stop.set()

        stopper = asyncio.create_task(stop_soon())
        try:
            await watch.call(operation, stop=stop)
        finally:
            await stopper

    with pytest.raises(StoreUnavailable, match="the database is locked"):
        asyncio.run(go())
    assert operation.calls == 3


def test_sleep_or_stop_sleeps_on_its_clock_unless_stopped():
    clock = FakeClock()
    stop = asyncio.Event()
    assert asyncio.run(sleep_or_stop(stop, 7.5, clock)) is False
    assert clock.slept == [7.5]
    stop.set()
    assert asyncio.run(sleep_or_stop(stop, 7.5, clock)) is True
    assert clock.slept == [7.5]  # already stopped: no sleep at all


def test_first_of_cancels_what_did_not_finish():
    async def go() -> tuple[bool, bool, bool]:
        stop = asyncio.Event()
        never = asyncio.Event()
        waiting = asyncio.ensure_future(never.wait())
        stop.set()
        finished, _ = await first_of(waiting, stop.wait())
        await asyncio.sleep(0)
        return finished, waiting.cancelled(), stop.is_set()

    assert asyncio.run(go()) == (False, True, True)
