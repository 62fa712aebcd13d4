"""Keys typed straight after '/' (a fast typist, a paste) all land in the Packets filter."""

from __future__ import annotations

from dataclasses import replace

from textual import events
from textual.widgets import Input

import pytest

from .conftest import eventually, until_finished
from .test_outcomes_controls import SIZE, _app

pytestmark = pytest.mark.asyncio
from lab.scenario import get_scenario


async def test_a_burst_of_keys_after_slash_is_typed_into_the_filter() -> None:
    app = _app("two-paths", transfers=(replace(get_scenario("two-paths").transfers[0], size_bytes=256 * 1024),))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        speed = app.lab_run.status().speed
        # every key queued before the app handles the first, as a terminal delivers a paste or a fast typist
        for key, char in [("slash", "/"), *[(c, c) for c in "flags=S"], ("space", " "), *[(c, c) for c in "l1q"]]:
            event = events.Key(key, char)
            event.set_sender(app)
            app._driver.send_message(event)
        typed = app.query_one("#packet-filter", Input)
        await eventually(pilot, lambda: typed.value == "flags=S l1q")  # the last key, 'q', typed too
        assert app.screen is app.screen_stack[0] and app.is_running  # neither 'l' nor 'q' acted
        assert app._tabs.active == "packets"
        assert app.lab_run.status().speed == speed
