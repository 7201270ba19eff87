"""The dashboard in a real browser (headless Chromium) against a real god with real consumers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import Browser, available
from tests.support.gods import God, addr_env
from tests.support.helpers import Proc, wait_for_results, wait_until, write_tasks
from tests.support.principals import new_keys, write_table
from tests.support.web import login_address, start_dashboard

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not available(), reason="no chromium and chromedriver (.ci/run installs them)")]


@pytest.fixture
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()


def logged_in(browser: Browser, url: str) -> None:
    """Open god's login address, as a person does; the page trades the token for a session."""
    browser.get(url)
    wait_until(lambda: browser.run("return location.pathname === '/' && document.querySelector('#done').textContent !== '–'"),
               20, "the dashboard to show god's figures")


def text(browser: Browser, css: str) -> Any:
    return browser.run("const e = document.querySelector(arguments[0]); return e ? e.textContent : null;", css)


def test_the_overview_shows_gods_figures_and_charts_them(
    start_god: Callable[..., God], spawn: Callable[..., Proc], browser: Browser, tmp_path: Path
) -> None:
    g, web = start_dashboard(start_god)
    e = addr_env(g)
    spawn("consumer", "--task", "tests.support.tasks:nap", "--processes", "2", env_extra=e)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "t.jsonl", list(range(1200)))), env_extra=e).wait() == 0
    logged_in(browser, f"http://{web.host}:{web.port}/login#token={web.token}")
    assert browser.run("return location.hash") == ""  # the token left the address bar
    # the numbers are god's (thousands separators and all), once work is done
    wait_for_results(g.results, 1200, timeout=60)

    def same() -> bool:
        s = web.api("GET", "/api/status")
        shown = {k: text(browser, f"#{k}") for k in ("done", "failed", "dead", "waiting", "running", "blocked")}
        return shown == {k: f"{s[k]:,}" for k in shown}

    wait_until(same, 10, "the overview to match /api/status")
    assert text(browser, "#done") == "1,200"
    # a chart has points after a few seconds of work
    wait_until(lambda: int(browser.run(
        "const p = document.querySelector('#chart-rate path.series'); return p ? p.dataset.points : 0;")) >= 3,
        15, "points on the results chart")
    assert browser.run("return document.querySelectorAll('#consumers tbody tr').length") == 1
    # a task that needs what no consumer has (producer --resources) says so on its queue's row
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "big.jsonl", [7])), "--resources", "gpu=4",
                 env_extra=e).wait() == 0
    unfit = "const t = document.querySelector('tr[data-queue=\"default\"] .tag.unfit'); return t ? t.textContent + '|' + t.title : ''"
    wait_until(lambda: browser.run(unfit) == "1 fit nowhere|fits nowhere: needs gpu=4; the largest has no gpu", 10,
               "the queue's fits-nowhere tag")
    if os.environ.get("GOD_SCREENSHOT"):  # README's picture: GOD_SCREENSHOT=tests/dashboard.png
        Path(os.environ["GOD_SCREENSHOT"]).write_bytes(browser.screenshot())


def test_pausing_a_queue_from_the_page_stops_its_work(
    start_god: Callable[..., God], spawn: Callable[..., Proc], browser: Browser, tmp_path: Path
) -> None:
    g, web = start_dashboard(start_god)
    e = addr_env(g)
    spawn("consumer", "--queues", "other,default", "--processes", "1", env_extra=e)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "a.jsonl", [1])), env_extra=e).wait() == 0
    wait_for_results(g.results, 1)
    logged_in(browser, f"http://{web.host}:{web.port}/login#token={web.token}")
    wait_until(lambda: browser.run("return !!document.querySelector('tr[data-queue=\"default\"] button.pause')"), 10,
               "the default queue's row")
    browser.click('tr[data-queue="default"] button.pause')
    wait_until(lambda: web.api("GET", "/api/status")["queues"]["default"]["paused"], 10, "the queue paused")
    wait_until(lambda: text(browser, 'tr[data-queue="default"] .tag') == "paused", 10, "the page to say paused")
    # its tasks wait while the consumer does another queue's work
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "b.jsonl", [2, 3])), env_extra=e).wait() == 0
    assert spawn("producer", "--queue", "other", "--from", str(write_tasks(tmp_path / "c.jsonl", [4])),
                 env_extra=e).wait() == 0
    assert [r["payload"] for r in wait_for_results(g.results, 2)] == [1, 4]
    assert web.api("GET", "/api/status")["queues"]["default"]["waiting"] == 2
    browser.click('tr[data-queue="default"] button.resume')
    assert sorted(r["payload"] for r in wait_for_results(g.results, 4)) == [1, 2, 3, 4]


def test_requeueing_a_dead_letter_from_the_page_gets_it_done(
    start_god: Callable[..., God], spawn: Callable[..., Proc], browser: Browser, tmp_path: Path
) -> None:
    g, web = start_dashboard(start_god, "--max-attempts", "1")
    e = addr_env(g)
    c = spawn("consumer", "--task", "tests.support.tasks:exit_on_tens", "--processes", "1", env_extra=e)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "a.jsonl", [10])), env_extra=e).wait() == 0
    (dead,) = wait_for_results(g.results, 1)
    c.stop()
    spawn("consumer", "--processes", "1", env_extra=e)  # one whose task does not die on 10
    logged_in(browser, f"http://{web.host}:{web.port}/login#token={web.token}")
    row = f'#dead-letters tr[data-id="{dead["id"]}"] button.requeue'
    wait_until(lambda: browser.run("return !!document.querySelector(arguments[0])", row), 15, "the dead letter's row")
    browser.click(row)
    (again,) = [r for r in wait_for_results(g.results, 2) if r["id"] != dead["id"]]
    assert again["ok"] and again["value"] == "10 * 10 = 100" and again["requeued_from"] == dead["id"]


def test_the_task_view_shows_what_the_task_wrote_and_reported(
    start_god: Callable[..., God], spawn: Callable[..., Proc], browser: Browser, tmp_path: Path
) -> None:
    g, web = start_dashboard(start_god)
    e = addr_env(g)
    spawn("consumer", "--task", "tests.support.tasks:speak", "--processes", "1", env_extra=e)
    assert spawn("producer", "--from", str(write_tasks(tmp_path / "a.jsonl", [4])), env_extra=e).wait() == 0
    (done,) = wait_for_results(g.results, 1)
    logged_in(browser, f"http://{web.host}:{web.port}/login#token={web.token}")
    browser.run("document.querySelector('#task-id').value = arguments[0]; "
                "document.querySelector('#lookup').requestSubmit();", done["id"])
    wait_until(lambda: "output on" in (text(browser, "#task") or ""), 15, "the task's output in its view")
    shown = text(browser, "#task")
    assert "\n  out 4 a\n  [stderr] err 4\n" in shown and shown.rstrip().endswith("out 4 b, in two writes")


def test_the_browser_is_refused_without_a_session_a_right_token_or_the_csrf_token(
    start_god: Callable[..., God], browser: Browser
) -> None:
    g, web = start_dashboard(start_god)
    base = f"http://{web.host}:{web.port}"
    browser.get(f"{base}/login#token={'0' * 40}")
    wait_until(lambda: "wrong token" in (text(browser, "#msg") or ""), 10, "the login page to say the token is wrong")
    assert browser.run("return fetch('/api/status').then(r => r.status)") == 401
    browser.get(f"{base}/")
    assert browser.run("return document.title") == "god: log in"  # no session: the login page, with 401
    logged_in(browser, f"{base}/login#token={web.token}")
    assert browser.run("return fetch('/api/status').then(r => r.status)") == 200
    no_csrf = ("return fetch('/api/pause', {method: 'POST', headers: {'Content-Type': 'application/json'}, "
               "body: JSON.stringify({queue: 'default'})}).then(r => r.status)")
    assert browser.run(no_csrf) == 403
    assert web.api("GET", "/api/status")["queues"] == {}  # nothing was paused


def test_the_page_follows_the_browsers_light_or_dark_theme(start_god: Callable[..., God], browser: Browser) -> None:
    g, web = start_dashboard(start_god)
    logged_in(browser, f"http://{web.host}:{web.port}/login#token={web.token}")
    background = "return getComputedStyle(document.body).backgroundColor"
    browser.color_scheme("light")
    assert browser.run(background) == "rgb(246, 247, 249)"
    browser.color_scheme("dark")
    assert browser.run(background) == "rgb(20, 23, 29)"


THEMES = {  # the page's colours: --accent, --ok (the first two queues), --warn (failed), --bad (dead)
    "light": ("#2f6fde", "#1f8f4e", "#b7791f", "#c53030"),
    "dark": ("#6ea1ff", "#4cc38a", "#f0b45a", "#ff6b6b"),
}


def test_each_line_of_a_chart_is_named_in_its_colour_in_both_themes(
    start_god: Callable[..., God], spawn: Callable[..., Proc], browser: Browser, tmp_path: Path
) -> None:
    g, web = start_dashboard(start_god)
    for queue in ("pages", "images"):  # waiting, with no consumer: a line each on "waiting"
        tasks = write_tasks(tmp_path / f"{queue}.jsonl", [1, 2, 3])
        assert spawn("producer", "--queue", queue, "--from", str(tasks), env_extra=addr_env(g)).wait() == 0
    logged_in(browser, f"http://{web.host}:{web.port}/login#token={web.token}")
    keys = """return [...document.querySelectorAll('.legend .key')].map(k => {
        const line = k.closest('section').querySelector(`path.series[data-series="${k.dataset.series}"]`);
        return [k.parentElement.id, k.textContent, k.querySelector('line').getAttribute('stroke'),
                line ? line.getAttribute('stroke') : null, k.offsetHeight > 0];
    })"""
    for scheme, (first, second, warn, bad) in THEMES.items():
        browser.color_scheme(scheme)
        expected = [["legend-depth", "images", first, first, True], ["legend-depth", "pages", second, second, True],
                    ["legend-failures", "failed", warn, warn, True], ["legend-failures", "dead", bad, bad, True]]
        wait_until(lambda: browser.run(keys) == expected, 20, f"the charts' legends in the {scheme} theme")
    assert browser.run("return document.querySelector('#legend-rate')") is None  # one line: its heading names it


def test_a_viewers_page_has_no_actions_and_an_operators_has(
    start_god: Callable[..., God], spawn: Callable[..., Proc], browser: Browser, env: dict[str, str], tmp_path: Path
) -> None:
    keys = new_keys("ops", "watch", "ingest")
    table = write_table(tmp_path / "keys.json", keys, {"ops": ["operator"], "watch": ["viewer"], "ingest": ["producer"]})
    g = start_god("--keys", str(table), "--http", "0")
    put = spawn("producer", "--rounds", "1", environment={**env, "GOD_AUTHKEY": keys["ingest"].decode(),
                                                          "GOD_ADDRESS": g.address})
    assert put.wait(30) == 0, put.text()  # tasks wait in the default queue: its row has a pause button

    def buttons() -> int:
        wait_until(lambda: browser.run("return document.querySelectorAll('#queues tbody tr').length") == 1, 10,
                   "the queue's row")
        return int(browser.run("return document.querySelectorAll('#queues button, .actions:not([hidden]) button')"
                               ".length"))

    logged_in(browser, login_address(g, keys["watch"]))
    assert buttons() == 0 and "watch (viewer)" in text(browser, "#where")
    browser.run("document.cookie = ''")
    logged_in(browser, login_address(g, keys["ops"]))
    assert buttons() == 3  # pause, requeue all, purge all
