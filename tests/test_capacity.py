"""Cloud Run's capacity and failure model in the local function servers (localcloud/frontend.py).

At most max_instances x concurrency requests run at once; one more waits up to the pending
timeout, then gets 429; a request past its timeout gets 504 and its instance is replaced; an
instance killed mid-request (its gunicorn worker or its functions-framework process) fails that request
(503) and a fresh instance serves the next ones.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request

import pytest
from handlers.support import SLEEPER, clean_environ, write_topology

from localcloud import LocalCloud


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    base = tmp_path_factory.mktemp("capacity")
    functions = {
        # one instance, one request at a time, short timeouts: the 429 and 504 tests
        "single": dict(max_instances=1, concurrency=1, timeout_seconds=3, pending_timeout_seconds=1.5),
        # two instances: a killed one is replaced while the other serves
        "pair": dict(max_instances=2, concurrency=1, timeout_seconds=60, pending_timeout_seconds=10),
        # one instance taking three requests at once
        "shared": dict(max_instances=1, concurrency=3, timeout_seconds=60, pending_timeout_seconds=10),
    }
    text = '[pubsub]\nport = 0\nemulator = "builtin"\n[storage]\nenabled = false\n'
    for name, settings in functions.items():
        text += f'[functions.{name}]\nsource = "{SLEEPER}"\ntarget = "sleeper"\nport = 0\n'
        text += "".join(f"{key} = {value}\n" for key, value in settings.items())
    local = LocalCloud.load(write_topology(base / "topology.toml", text), base / "run", environ=clean_environ()).up()
    yield local
    local.down()


def _get(cloud, function: str, sleep: float = 0.0, timeout: float = 60) -> tuple[int, dict | str, float]:
    """(status, JSON answer or text, seconds taken) of one request."""
    url = cloud.function_url(function) + f"?sleep={sleep}"
    began = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read()), time.monotonic() - began
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), time.monotonic() - began


def _in_background(call, *args) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(call(*args)))
    thread.start()
    return thread, result


def _wait(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"{what} not met in {timeout} s"
        time.sleep(0.05)
    return value


def _ready_pids(cloud, function: str) -> set[int]:
    return {i["pid"] for i in cloud.instances(function) if i["state"] == "ready"}


def test_a_request_beyond_capacity_waits_for_a_free_instance(cloud):
    first, first_result = _in_background(_get, cloud, "single", 0.8)
    _wait(lambda: cloud.busy_pids("single"), what="first request running")
    status, answer, took = _get(cloud, "single")  # queued behind the first, within the 1.5 s pending timeout
    first.join()
    assert first_result[0][0] == 200 and status == 200
    assert answer["pid"] == first_result[0][1]["pid"]  # the same (only) instance, once free
    assert took > 0.3


def test_beyond_max_instances_after_the_pending_timeout_is_429(cloud):
    first, first_result = _in_background(_get, cloud, "single", 2.5)
    _wait(lambda: cloud.busy_pids("single"), what="first request running")
    status, text, took = _get(cloud, "single")
    assert status == 429 and "no available instance" in text
    assert 1.4 < took < 2.5  # held for the 1.5 s pending timeout, not answered at once
    first.join()
    assert first_result[0][0] == 200


def test_a_request_past_its_timeout_is_504_and_a_fresh_instance_serves_the_next(cloud):
    (before,) = _wait(lambda: _ready_pids(cloud, "single"), what="a ready instance")
    status, text, took = _get(cloud, "single", sleep=30)
    assert status == 504 and "timeout" in text
    assert 2.9 < took < 6  # the 3 s timeout
    _wait(lambda: not os.path.exists(f"/proc/{before}") or _zombie(before), what="the timed-out instance gone")
    status, answer, _ = _get(cloud, "single")  # waits (pending) for the replacement's cold start
    if status == 429:  # a very slow machine: the cold start took longer than the pending timeout
        _wait(lambda: _ready_pids(cloud, "single"), what="the replacement ready")
        status, answer, _ = _get(cloud, "single")
    assert status == 200 and answer["pid"] != before
    assert _ready_pids(cloud, "single") == {answer["pid"]}


def _zombie(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_kill_9_of_an_instance_mid_request_fails_it_and_a_fresh_instance_replaces_it(cloud):
    before = _wait(lambda: len(pids := _ready_pids(cloud, "pair")) == 2 and pids, what="two instances")
    request, result = _in_background(_get, cloud, "pair", 30)
    (busy,) = _wait(lambda: cloud.busy_pids("pair"), what="a busy instance")
    os.kill(busy, signal.SIGKILL)
    request.join(10)
    status, text, took = result[0]
    assert status == 503 and "connection to the instance had an error" in text
    assert took < 10
    # The other instance serves meanwhile; a fresh one takes the killed one's place.
    assert _get(cloud, "pair")[0] == 200

    def replaced() -> set[int] | None:
        pids = _ready_pids(cloud, "pair")
        return pids if len(pids) == 2 and busy not in pids else None

    after = _wait(replaced, what="a replacement instance")
    assert len(after - before) == 1  # the survivor plus one new pid


def test_concurrency_is_per_instance(cloud):
    threads = [_in_background(_get, cloud, "shared", 1.0) for _ in range(4)]
    for thread, _ in threads:
        thread.join()
    results = sorted((r[0][2], r[0][1]["pid"], r[0][0]) for _, r in threads)
    assert [status for *_, status in results] == [200] * 4
    assert len({pid for _, pid, _ in results}) == 1  # one instance took three at once
    assert all(took < 1.8 for took, _, _ in results[:3])  # three ran together
    assert results[3][0] > 1.8  # the fourth waited for one of them


def test_kill_9_of_the_functions_framework_process_mid_request_takes_its_worker_and_the_instance_is_replaced(cloud):
    _wait(lambda: len(_ready_pids(cloud, "pair")) == 2, what="two instances")
    request, result = _in_background(_get, cloud, "pair", 30)
    (busy,) = _wait(lambda: [i for i in cloud.instances("pair") if i["in_flight"] and i["state"] == "ready"],
                    what="a busy instance")
    os.kill(busy["server_pid"], signal.SIGKILL)  # not the worker running the request: gunicorn's arbiter
    request.join(10)
    status, text, took = result[0]
    assert status == 503 and "connection to the instance had an error" in text and took < 10
    _wait(lambda: _zombie(busy["pid"]), what="the worker killed with its instance")
    _wait(lambda: len(pids := _ready_pids(cloud, "pair")) == 2 and busy["pid"] not in pids, what="a replacement")


def _proc(pid: int, name: str) -> bytes:
    with open(f"/proc/{pid}/{name}", "rb") as file:
        return file.read()


def test_an_instance_is_a_functions_framework_server_and_its_gunicorn_worker(cloud):
    (instance,) = _wait(lambda: [i for i in cloud.instances("shared") if i["state"] == "ready"], what="an instance")
    server, worker = instance["server_pid"], instance["pid"]
    argv = _proc(server, "cmdline").split(b"\0")
    assert any(arg.endswith(b"functions-framework") for arg in argv) or b"functions_framework" in argv
    assert argv[argv.index(b"--host") + 1] == b"127.0.0.1" and argv[argv.index(b"--port") + 1] == str(instance["port"]).encode()
    assert int(_proc(worker, "stat").rsplit(b")", 1)[1].split()[1]) == server  # the worker gunicorn forked
    environ = dict(item.split(b"=", 1) for item in _proc(worker, "environ").split(b"\0") if b"=" in item)
    assert environ[b"K_SERVICE"] == environ[b"K_CONFIGURATION"] == b"shared" and environ[b"K_REVISION"]
    assert (environ[b"FUNCTION_TARGET"], environ[b"FUNCTION_SIGNATURE_TYPE"]) == (b"sleeper", b"http")
    assert (environ[b"WORKERS"], environ[b"THREADS"]) == (b"1", b"3")  # one worker, concurrency threads
    assert _get(cloud, "shared")[1]["pid"] == worker  # the worker serves the requests
