"""The live lab: a Textual app built from a LabRun (simulated, replayed or on Mininet)."""

from __future__ import annotations

import gc
import os
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, TabbedContent, TabPane, Tabs
from textual.worker import Worker

from lab.errors import LabError
from lab.runs import STEP_S, LabRun, faster
from lab.scenario.moments import Moment, MomentDetector
from lab.scenario.outcomes import tracker_for
from lab.trace import TraceRecord
from tui.messages import ControlRequested, RunFinished, TraceBatch
from tui.report_key import report_target, short_path
from tui.report_key import write as write_report
from tui.screens.help import HelpScreen
from tui.screens.pickers import Picker
from tui.widgets.base import TraceView
from tui.widgets.eno import EnoView
from tui.widgets.events import EventLog
from tui.widgets.graphs import GraphsView
from tui.widgets.highlights import HighlightsPane
from tui.widgets.iketcp import IketcpView
from tui.widgets.moments import MomentBar, MomentTimeline
from tui.widgets.packets import PacketsView
from tui.widgets.status import ReplayBanner, StatusBar, TimeSlider
from tui.widgets.subflows import SubflowsView
from tui.widgets.topology import TopologyView

TABS = ("topology", "subflows", "eno", "iketcp", "packets", "events", "graphs")
MAX_NOTES_PER_BATCH = 3
FLUSH_S = 0.25  # how often tables catch up with what the records changed
STATUS_S = 0.2  # the status line and the moment timeline follow the clock this often
INGEST_SLICE_S = 0.015  # drawing records yields to key presses after this long
GC_FREEZE_S = 1.0  # see LabApp._settle_heap


class LabApp(App[None]):
    """Everything it shows comes from ``lab_run``'s trace records; controls go back to it."""

    CSS_PATH = "lab.tcss"
    TITLE = "tcplab"
    BINDINGS = [
        Binding("question_mark,f1", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("1", "show_tab('topology')", "Topology", show=False, priority=True),
        Binding("2", "show_tab('subflows')", "Subflows", show=False, priority=True),
        Binding("3", "show_tab('eno')", "ENO", show=False, priority=True),
        Binding("4", "show_tab('iketcp')", "IKETCP", show=False, priority=True),
        Binding("5", "show_tab('packets')", "Packets", show=False, priority=True),
        Binding("6", "show_tab('events')", "Events", show=False, priority=True),
        Binding("7", "show_tab('graphs')", "Graphs", show=False, priority=True),
        Binding("space", "toggle_pause", "Pause", priority=True),
        Binding("n", "next_moment", "Moment", priority=True),
        Binding("N,p", "previous_moment", "Prev", show=False, priority=True),
        Binding("s", "step", "Step", show=False),
        Binding("plus,equals_sign", "faster", "Faster", show=False),
        Binding("minus", "slower", "Slower", show=False),
        Binding("t", "start_transfer", "Transfer"),
        Binding("slash", "filter_packets", "Filter", show=False, priority=True),
        Binding("l", "pick_link", "Link"),
        Binding("m", "pick_policy", "Policy"),
        Binding("x", "stop_transfer", "Stop", show=False),
        Binding("r", "report", "Report", show=False),
        Binding("left_square_bracket", "seek_by(-1)", "−1 s", show=False),
        Binding("right_square_bracket", "seek_by(1)", "+1 s", show=False),
    ]
    HELP_KEYS = [
        ("1 … 7", "switch view: Topology, Subflows, ENO, IKETCP, Packets, Events, Graphs"),
        ("space", "pause / resume (the live lab pauses at each key moment; --no-auto-pause turns that off)"),
        ("n / N (or p)", "next / previous key moment: its view and caption (a replay jumps there)"),
        ("s", f"step {STEP_S:g} s of virtual time (pauses)"),
        ("+ / -", "faster / slower (up to as fast as possible)"),
        ("l", "take a link down or bring it up (also Enter on the Links table)"),
        ("m", "switch a middlebox policy on or off (also Enter on the Middleboxes table)"),
        ("t / x", "start the scenario's own workload again (MPTCP, ENO, IKE...) / stop the last one started"),
        ("[ / ]", "replay: one second back / forward (←/→ on the time slider, or click it)"),
        ("r", "write the bundle's HTML report beside it (a live run: once finished)"),
        ("/ then Esc", "type a Packets filter (node=h1 flags=S opt=MP_CAPABLE …) / leave it"),
        ("Ctrl+P", "command palette: every control by name"),
        ("? or F1", "this help"),
        ("q", "quit"),
    ]

    def __init__(self, lab_run: LabRun) -> None:
        super().__init__()
        # no sliding tab underline: each of its frames redrew the screen while a key waited
        if "TEXTUAL_ANIMATIONS" not in os.environ:
            self.animation_level = "none"
        self.lab_run = lab_run
        self._generation = 0
        self._follower: Worker | None = None
        self._reader = 0
        self.batches_applied = 0
        self.records_applied = 0
        self.finished = False
        self.problems: list[str] = []  # what the scenario did not expect
        self.expected: list[str] = []  # errors its key moments are made of (an AEAD failure in tcpcrypt-tamper)
        self.auto_pause = bool(getattr(lab_run, "pause_at_moments", False))
        self.moment_detector = MomentDetector(lab_run.moment_specs())
        self.outcomes = tracker_for(lab_run.scenario_declared())  # transfers against what the scenario expects
        self.outcomes_version = 0
        self.moments: list[Moment] = []  # found in the records shown so far, in order
        self.moment_index: int | None = None  # the one on screen
        self.notices: list[str] = []  # every notice shown on the status line, oldest first
        self._notice: tuple[str, str, float] | None = None  # (text, severity, shown until)
        self._seeking = False
        self._incoming: deque[tuple[int, list[TraceRecord]]] = deque()  # batches waiting to be drawn
        self._ingest_posted = False
        self._reporting = False
        self.last_report: Path | None = None  # the report the report key wrote last

    # --- layout

    def compose(self) -> ComposeResult:
        with Vertical(id="top"):
            yield StatusBar(id="status")
            yield MomentBar(len(self.moment_detector.specs), pausing=self.auto_pause, id="moment")
            if "seek" in self.lab_run.controls:
                yield ReplayBanner(id="replay-banner")
                marks = [m.t for m in self.lab_run.known_moments()]
                yield TimeSlider(getattr(self.lab_run, "duration", 0.0), marks, id="slider")
            else:
                yield MomentTimeline(id="moment-timeline")
        initial = self.lab_run.main_view()
        with TabbedContent(id="tabs", initial=initial if initial in TABS else "topology"):
            with TabPane("1 Topology", id="topology"):
                yield TopologyView(self.lab_run.topology(), id="topology-view")
            with TabPane("2 Subflows", id="subflows"):
                yield SubflowsView(id="subflows-view")
            with TabPane("3 ENO", id="eno"):
                yield EnoView(id="eno-view")
            with TabPane("4 IKETCP", id="iketcp"):
                yield IketcpView(id="iketcp-view")
            with TabPane("5 Packets", id="packets"):
                yield PacketsView(id="packets-view")
            with TabPane("6 Events", id="events"):
                yield HighlightsPane(self.lab_run.topology(), id="events-highlights")
                yield EventLog(id="events-view")
            with TabPane("7 Graphs", id="graphs"):
                yield GraphsView(self.lab_run.topology(), id="graphs-view")
        yield Footer()

    def on_mount(self) -> None:
        # kept, not queried: while a modal screen is up, queries see that screen only
        self._views: list[Any] = [w for w in self.screen.query("*") if isinstance(w, TraceView)]
        self._status_bar = self.screen.query_one(StatusBar)
        self._sliders = list(self.screen.query(TimeSlider))
        self._banners = list(self.screen.query(ReplayBanner))
        self._tabs = self.screen.query_one(TabbedContent)
        self.topology_view = self.screen.query_one(TopologyView)
        self._moment_bar = self.screen.query_one(MomentBar)
        self._timelines = list(self.screen.query(MomentTimeline))
        initial = self.lab_run.main_view()
        if initial in TABS:
            self.call_after_refresh(self.action_show_tab, initial)  # the scenario's main view first
        for tabs in self.screen.query(Tabs):
            tabs.can_focus = False  # arrows never switch views (1-7 do); they belong to the slider and tables
        self.title = f"tcplab — {self.lab_run.name}"
        self.refresh_status()
        self.set_interval(STATUS_S, self.refresh_status)
        self.set_interval(FLUSH_S, self.flush_views)
        self.set_interval(GC_FREEZE_S, self._settle_heap)
        self.follow_run()

    def _settle_heap(self) -> None:
        """Keep full garbage collections short while records stream in.

        The app keeps what it is shown (records, rows), so the heap grows steadily
        and CPython's full collections, each scanning all of it, grew to 30-130 ms
        pauses: a key press that met one waited that long. Every ``GC_FREEZE_S``
        the young generations are collected (cheap) and the survivors frozen out
        of later scans (``gc.freeze``); once the run has finished they are
        unfrozen, so a later full collection can still reclaim what became
        cyclic garbage in the meantime.
        """
        if self.finished:
            if gc.get_freeze_count():
                gc.unfreeze()
            return
        gc.collect(1)
        gc.freeze()

    def views(self) -> list[Any]:
        return list(self._views)

    # --- records in

    def follow_run(self) -> None:
        """Start reading the run's batches unless a reader is already at it."""
        if self._follower is not None and not self._follower.is_finished:
            return
        self.finished = False
        self._reader += 1
        self._follower = self._follow(self._reader)

    @work(exclusive=False, group="lab-run", exit_on_error=False)
    async def _follow(self, reader: int) -> None:
        try:
            async for records in self.lab_run.trace_batches(interval=0.05):
                self._receive(records, self._generation)
        except Exception as exc:  # a broken source must not take the app down
            rec = TraceRecord(0.0, "tui", "run", "error", {"reason": f"the run stopped: {type(exc).__name__}: {exc}"})
            self._receive([rec], self._generation)
        self.post_message(RunFinished(reader))

    def _receive(self, records: list[TraceRecord], generation: int) -> None:
        """Queue a batch for drawing; at most one ``TraceBatch`` waits in the app's queue.

        Batches posted one message each piled up in the app's message queue
        whenever drawing fell behind, and a key press waited behind all of
        them (200 ms and more at 5,000 records/s on a busy machine). Now they
        wait here, and each ``TraceBatch`` draws for at most ``INGEST_SLICE_S``
        before letting queued key presses through.
        """
        self._incoming.append((generation, records))
        if not self._ingest_posted:
            self._ingest_posted = True
            self.post_message(TraceBatch([], generation))

    @on(TraceBatch)
    def apply_trace(self, message: TraceBatch) -> None:
        if message.records and message.generation == self._generation:
            self.apply_records(message.records)  # posted by hand (tests, tools): drawn at once
        self._ingest_posted = False
        self._ingest(INGEST_SLICE_S)

    def _ingest(self, budget_s: float | None) -> None:
        """Draw queued batches for up to ``budget_s`` (None: all of them)."""
        deadline = None if budget_s is None else time.perf_counter() + budget_s
        incoming = self._incoming
        while incoming:
            generation, records = incoming.popleft()
            if generation != self._generation:
                continue  # from before a seek
            self.apply_records(records)
            if deadline is not None and time.perf_counter() > deadline:
                break
        if incoming and not self._ingest_posted:
            self._ingest_posted = True
            self.post_message(TraceBatch([], self._generation))

    def apply_records(self, records: list[TraceRecord]) -> None:
        for view in self.views():
            try:
                view.apply(records)
            except Exception as exc:  # a view that trips on odd data must not end the session
                self._problem(f"{type(view).__name__} could not draw a record: {type(exc).__name__}: {exc}")
        new = self.moment_detector.feed(records)
        if new:
            self.moments.extend(new)
        if self.outcomes.feed(records):
            self.outcomes_version += 1
            self._unexpected_outcomes()
        notes = 0
        for rec in records:
            if rec.name == "error":
                reason = str(rec.data.get("reason", rec.data))
                if self.outcomes.expects.error_expected(rec) or self._part_of_a_moment(rec):
                    self.expected.append(reason)  # the scenario's lesson, not a problem
                    continue
                self.problems.append(reason)
                if notes < MAX_NOTES_PER_BATCH:
                    notes += 1
                    self.notify(reason, title=f"{rec.layer} problem", severity="error", timeout=8)
        if new and not self._seeking:
            self._moments_happened(new)
        self.batches_applied += 1
        self.records_applied += len(records)

    def _unexpected_outcomes(self) -> None:
        """A transfer that ended otherwise than the scenario expects is a problem (once)."""
        for text in self.outcomes.unexpected():
            if text not in self.problems:
                self.problems.append(text)
                self.notify(text, title="unexpected", severity="error", timeout=8)

    # --- key moments

    def _part_of_a_moment(self, rec: TraceRecord) -> bool:
        """An error record at the node and instant of a declared moment is what the scenario shows."""
        return any(m.node == rec.node and abs(m.t - rec.t) < 1e-9 for m in reversed(self.moments[-8:]))

    def _moments_happened(self, new: list[Moment]) -> None:
        """Show the latest moment; when the run pauses at moments, also its view."""
        self.moment_index = len(self.moments) - 1
        if self.auto_pause:
            self.action_show_tab(new[-1].view)
        self._show_moment()

    def _show_moment(self) -> None:
        if not self._moment_bar.is_attached:
            return
        index = self.moment_index
        moment = self.moments[index] if index is not None and index < len(self.moments) else None
        try:
            paused = self.lab_run.status().paused
        except Exception:
            paused = False
        paused_here = bool(moment is not None and paused and self.auto_pause and index == len(self.moments) - 1)
        self._moment_bar.show(moment, index or 0, len(self.moments), paused_here=paused_here)

    def _jump_to_moment(self, index: int) -> None:
        known = self.lab_run.known_moments() or self.moments
        if not known:
            self.notify("no key moment yet", timeout=2)
            return
        index %= len(known)
        moment = known[index]
        if "seek" in self.lab_run.controls:
            self.seek(moment.t + 1e-9)
            self.lab_run.pause(True)
            self.moment_index = next(
                (
                    i
                    for i, m in enumerate(self.moments)
                    if (m.t, m.key, m.caption) == (moment.t, moment.key, moment.caption)
                ),
                len(self.moments) - 1 if self.moments else None,
            )
        else:
            self.moment_index = index
        self.action_show_tab(moment.view)
        self._show_moment()
        self.refresh_status()

    def action_next_moment(self) -> None:
        current = self.moment_index
        self._jump_to_moment(0 if current is None else current + 1)

    def action_previous_moment(self) -> None:
        current = self.moment_index
        self._jump_to_moment(-1 if current is None else current - 1)

    # --- notices: one status line, never a toast over the content

    def notify(  # type: ignore[override]
        self,
        message: str,
        *,
        title: str = "",
        severity: str = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        text = f"{title}: {message}" if title else str(message)
        self.notices.append(text)
        del self.notices[:-200]
        self._notice = (text, severity, time.monotonic() + (timeout or 5.0))
        self.refresh_status()

    def flush_views(self) -> None:
        for view in self._views:
            try:
                view.flush()
            except Exception as exc:  # never let drawing end the session
                self._problem(f"{type(view).__name__} could not draw: {type(exc).__name__}: {exc}")

    def _problem(self, reason: str) -> None:
        self.problems.append(reason)
        self.notify(reason, title="problem", severity="error", timeout=8)

    @on(RunFinished)
    def run_finished(self, message: RunFinished) -> None:
        if message.reader != self._reader:
            return  # an earlier reader; a newer one is at work
        self._ingest(None)
        self.flush_views()
        if self.lab_run.status().finished:
            for view in self._views:
                ended = getattr(view, "run_ended", None)
                if ended is not None:
                    ended()
        self.finished = True
        self.refresh_status()

    def refresh_status(self) -> None:
        try:
            status = self.lab_run.status()
        except Exception as exc:  # keep the UI alive whatever the run does
            self._problem(f"status: {exc}")
            return
        if not getattr(self, "_status_bar", None) or not self._status_bar.is_attached:
            return
        notice = self._notice
        if notice is not None and time.monotonic() > notice[2]:
            notice = self._notice = None
        self._status_bar.show(
            name=self.lab_run.name,
            backend=self.lab_run.backend,
            status=status,
            problems=len(self.problems),
            notice=notice[:2] if notice else None,
            expected=len(self.expected),
        )
        for slider in self._sliders:
            slider.show_status(status)
        for banner in self._banners:
            banner.show_status(status)
        marks = [m.t for m in self.moments]
        for timeline in self._timelines:
            timeline.update_marks(marks, status.now, self.moment_index)
        if self._moment_bar.paused_here != (
            status.paused
            and self.auto_pause
            and self.moment_index is not None
            and self.moment_index == len(self.moments) - 1
        ):
            self._show_moment()

    # --- controls

    def _control(self, fn: Any, *args: Any) -> Any:
        """Run a control; a refusal becomes a notification."""
        try:
            result = fn(*args)
        except LabError as exc:
            self.notify(str(exc), title="not possible", severity="warning")
            return None
        self.follow_run()
        self.refresh_status()
        return result

    # Views and moments are priority bindings: the app acts on them as the key arrives,
    # instead of after the key has travelled to the focused widget and bubbled back
    # up (a queue per widget on the way, each waiting its turn behind drawing).
    # While the Packets filter or a dialog has the keys, they are typed there instead.
    PRIORITY_ACTIONS = frozenset({"show_tab", "toggle_pause", "next_moment", "previous_moment", "filter_packets"})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in self.PRIORITY_ACTIONS and (len(self.screen_stack) > 1 or isinstance(self.focused, Input)):
            return False
        return True

    def action_show_tab(self, tab: str) -> None:
        if self.focused is not None and tab != self._tabs.active:
            self.screen.set_focus(None)  # else the tabs follow the focus back to the view it was in
        self._tabs.active = tab

    def action_filter_packets(self) -> None:
        """Packets, with the focus in its filter: typing there never fires a global key."""
        self.action_show_tab("packets")
        # now, not later (focus() waits for the queue): the keys typed next are the filter's
        self.screen.set_focus(self.screen.query_one("#packet-filter"))

    def action_toggle_pause(self) -> None:
        paused = self.lab_run.status().paused
        self._control(self.lab_run.pause, not paused)

    def action_step(self) -> None:
        self._control(self.lab_run.step, STEP_S)

    def action_faster(self) -> None:
        self._control(self.lab_run.set_speed, faster(self.lab_run.status().speed, +1))

    def action_slower(self) -> None:
        self._control(self.lab_run.set_speed, faster(self.lab_run.status().speed, -1))

    def action_toggle_link(self, link: str) -> None:
        up = self.topology_view.link_up.get(link, True)
        if self._control(self.lab_run.set_link_up, link, not up) is not None or "links" in self.lab_run.controls:
            self.notify(f"link {link} {'down' if up else 'up'}", timeout=2)

    def action_pick_link(self) -> None:
        if "links" not in self.lab_run.controls:
            self.notify(f"a {self.lab_run.backend} run cannot change links", severity="warning")
            return
        view = self.topology_view
        options = [
            (name, f"{name}  ({'up → take down' if up else 'DOWN → bring up'})") for name, up in view.link_up.items()
        ]
        self.push_screen(Picker("Take a link down or up", options), self._picked_link)

    def _picked_link(self, link: str | None) -> None:
        if link:
            self.action_toggle_link(link)

    def action_toggle_policy(self, key: str) -> None:
        policies = {p.key: p for p in self.lab_run.middlebox_policies()}
        if key not in policies:
            self.notify(f"policy {key} cannot be switched in a {self.lab_run.backend} run", severity="warning")
            return
        on_now = policies[key].enabled
        self._control(self.lab_run.set_middlebox_enabled, key, not on_now)
        self.notify(f"{policies[key].router}: {policies[key].label} {'off' if on_now else 'on'}", timeout=2)

    def action_pick_policy(self) -> None:
        policies = self.lab_run.middlebox_policies()
        if not policies:
            self.notify(f"a {self.lab_run.backend} run has no middlebox controls", severity="warning")
            return
        options = [(p.key, f"{p.router}: {p.label}  [{'on' if p.enabled else 'off'}]") for p in policies]
        self.push_screen(Picker("Switch a middlebox policy", options), self._picked_policy)

    def _picked_policy(self, key: str | None) -> None:
        if key:
            self.action_toggle_policy(key)

    def action_start_transfer(self) -> None:
        name = self._control(self.lab_run.start_transfer)
        if name:
            self.notify(f"transfer {name} started", timeout=2)

    def action_stop_transfer(self) -> None:
        if "transfer" not in self.lab_run.controls:
            self._control(self.lab_run.stop_transfer)
            return
        name = self._control(self.lab_run.stop_transfer)
        self.notify(f"transfer {name} stopped" if name else "no transfer started here is running", timeout=2)

    def action_seek_by(self, seconds: float) -> None:
        self.seek(self.lab_run.status().now + seconds)

    @on(TimeSlider.Seek)
    def slider_seek(self, message: TimeSlider.Seek) -> None:
        self.seek(message.t)

    def seek(self, t: float) -> None:
        """Redraw every view as of virtual time ``t`` (replays)."""
        if "seek" not in self.lab_run.controls:
            self.notify(f"a {self.lab_run.backend} run cannot seek", severity="warning")
            return
        records = self.lab_run.seek(t)
        self._generation += 1
        self._incoming.clear()
        self.problems = []
        self.expected = []
        self.outcomes.reset()
        self.outcomes_version += 1
        for view in self.views():
            view.reset()
        self.moment_detector.reset()
        self.moments = []
        self._seeking = True
        try:
            self.apply_records(records)
        finally:
            self._seeking = False
        self.moment_index = len(self.moments) - 1 if self.moments else None
        self._show_moment()
        self.flush_views()
        self.follow_run()
        self.refresh_status()

    @on(ControlRequested)
    async def run_control(self, message: ControlRequested) -> None:
        await self.run_action(message.action)

    def action_report(self) -> None:
        """Write the report of the bundle on screen, in a thread; the status line says where."""
        target = report_target(self.lab_run)
        if target.bundle is None:
            self.notify(target.reason, title="no report", severity="warning", timeout=10)
            return
        if self._reporting:
            self.notify("the report is being written", timeout=3)
            return
        self._reporting = True
        self.notify(f"writing the report of {short_path(target.bundle)}…", timeout=60)
        self._write_report(target.bundle)

    @work(thread=True, exclusive=True, group="report", exit_on_error=False)
    def _write_report(self, bundle: Path) -> None:
        try:
            out = write_report(bundle)
        except Exception as exc:  # a bundle the report cannot read: said on the status line, the app stays
            self.call_from_thread(self._report_done, None, f"{type(exc).__name__}: {exc}")
        else:
            self.call_from_thread(self._report_done, out, "")

    def _report_done(self, out: Path | None, error: str) -> None:
        self._reporting = False
        self.last_report = out
        if out is None:
            self.notify(error, title="report not written", severity="error", timeout=10)
        else:
            self.notify(f"report: {short_path(out)}", timeout=30)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.HELP_KEYS, self.lab_run.controls))

    # --- the command palette lists every control

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for tab in TABS:
            yield SystemCommand(f"Show {tab}", f"switch to the {tab} view", lambda tab=tab: self.action_show_tab(tab))
        yield SystemCommand("Pause / resume", "pause or resume the run", self.action_toggle_pause)
        yield SystemCommand("Step", f"advance {STEP_S:g} s of virtual time", self.action_step)
        yield SystemCommand("Faster", "raise the speed", self.action_faster)
        yield SystemCommand("Slower", "lower the speed", self.action_slower)
        yield SystemCommand(
            "Start a transfer", "the scenario's own workload again, with its protocol and settings", self.action_start_transfer
        )
        yield SystemCommand("Stop the transfer", "abort the last transfer started here", self.action_stop_transfer)
        yield SystemCommand("Write the report", "the HTML report of the bundle shown, beside it", self.action_report)
        if "links" in self.lab_run.controls:
            for name, up in self.topology_view.link_up.items():
                yield SystemCommand(
                    f"Link {name} {'down' if up else 'up'}",
                    f"{'take down' if up else 'bring up'} link {name}",
                    lambda name=name: self.action_toggle_link(name),
                )
        for p in self.lab_run.middlebox_policies():
            yield SystemCommand(
                f"Middlebox {p.router}: {p.label} {'off' if p.enabled else 'on'}",
                "switch the policy",
                lambda key=p.key: self.action_toggle_policy(key),
            )
        yield SystemCommand("Help", "keys and views", self.action_help)

    def on_unmount(self) -> None:
        self.lab_run.close()
