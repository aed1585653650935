"""The remote HTTP classifier and the local server: protocol, query counts, budgets, failures, attacks end to end."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest
import torch

from modelward.attacks.evasion.hopskipjump import HopSkipJump
from modelward.attacks.evasion.square import Square
from modelward.attacks.extraction import ModelExtraction
from modelward.classifiers.base import Capability, ClassifierError, MissingCapabilityError, QueryBudgetExceeded
from modelward.classifiers.models import SmallCNN
from modelward.classifiers.remote import RemoteClassifier
from modelward.classifiers.serve_local import LocalServer, serve_classifier
from modelward.classifiers.torch_adapter import TorchClassifier
from modelward.classifiers.training import train_classifier
from modelward.datasets.builtin import load_digits_images

SHAPE = (1, 8, 8)


@pytest.fixture(scope="module")
def model() -> Iterator[tuple[TorchClassifier, torch.Tensor, torch.Tensor]]:
    """A SmallCNN trained on digits, wrapped locally, and 20 test digits (one thread: the suite runs on two workers)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    split = load_digits_images(seed=0)
    module = train_classifier(SmallCNN(width=16), split.x_train, split.y_train, epochs=15, seed=0)
    yield TorchClassifier(module, SHAPE), split.x_test[:20], split.y_test[:20]
    torch.set_num_threads(previous)


def remote(url: str, output: str = "scores", **options: Any) -> RemoteClassifier:
    """A client for a digits endpoint."""
    return RemoteClassifier(url, output=output, input_shape=SHAPE, bounds=(0.0, 1.0), num_classes=10, **options)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# the protocol against the real local server
# --------------------------------------------------------------------------------------------
def test_scores_round_trip_exactly_and_batches_are_counted(
    model: tuple[TorchClassifier, torch.Tensor, torch.Tensor],
) -> None:
    local, x, _ = model
    with serve_classifier(local) as server:
        client = remote(server.url, batch_size=7)
        assert client.capabilities == {Capability.SCORES, Capability.LABELS}
        scores = client.probabilities(x)
        same_chunks = torch.cat([local.probabilities(x[i : i + 7]) for i in range(0, 20, 7)])
        assert torch.equal(scores, same_chunks)  # float32 survives the JSON round trip bit for bit
        assert torch.equal(client.predict(x), local.predict(x))
        assert client.queries == 40 and server.inputs == 40
        assert client.requests_sent == server.requests == 6  # 20 inputs in chunks of 7, twice
    assert "RemoteClassifier('http://127.0.0.1:" in repr(client)


def test_labels_endpoint_offers_labels_only(model: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    local, x, _ = model
    with serve_classifier(local, output="labels") as server:
        client = remote(server.url, output="labels")
        assert client.capabilities == {Capability.LABELS}
        assert torch.equal(client.predict(x), local.predict(x))
        with pytest.raises(MissingCapabilityError, match="needs capability scores"):
            client.probabilities(x)
        with pytest.raises(
            MissingCapabilityError, match="square needs capability scores; this classifier offers labels"
        ):
            Square(client)
        assert server.inputs == client.queries == 20


def test_budget_is_enforced_before_anything_is_sent(model: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    local, x, _ = model
    with serve_classifier(local) as server:
        client = remote(server.url, query_budget=10)
        client.predict(x[:8])
        with pytest.raises(QueryBudgetExceeded, match="query budget of 10 spent"):
            client.predict(x[:5])
        with pytest.raises(QueryBudgetExceeded):
            client.probabilities(x[:3])
        assert server.inputs == client.queries == 8 and server.requests == 1
        client.predict(x[:2])  # exactly up to the budget is fine
        assert server.inputs == client.queries == 10


def test_inputs_are_checked_locally_first(model: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    local, x, _ = model
    with serve_classifier(local) as server:
        client = remote(server.url)
        with pytest.raises(ClassifierError, match="outside the classifier's bounds"):
            client.predict(x * 2)
        with pytest.raises(ClassifierError, match="expected inputs of shape"):
            client.predict(x.view(20, 64))
        assert server.requests == 0 and client.queries == 0


def test_square_end_to_end_over_http(model: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    local, x, y = model
    with serve_classifier(local) as server:
        client = remote(server.url)
        result = Square(client, max_queries=150, seed=0).perturb(x, y, 0.2)
        assert result.success_rate >= 0.8
        assert torch.equal(result.success, local.predict(result.adversarial) != y)
        assert server.inputs == client.queries == int(result.queries.sum())
        assert int(result.queries.max()) <= 150


def test_hopskipjump_end_to_end_over_http(model: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    local, x, y = model
    with serve_classifier(local, output="labels") as server:
        client = remote(server.url, output="labels")
        run = HopSkipJump(client, max_queries=150, seed=0).minimum_norm(x[:5], y[:5])
        assert bool(run.success.all())
        assert torch.equal(local.predict(run.adversarial) != y[:5], run.success)
        assert server.inputs == client.queries == int(run.queries.sum())


def test_square_spends_a_remote_budget_then_stops(model: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    local, x, y = model
    with serve_classifier(local) as server:
        client = remote(server.url, query_budget=50)
        with pytest.raises(QueryBudgetExceeded):
            Square(client, max_queries=1000, seed=0).perturb(x, y, 0.02)
        assert client.queries <= 50 and server.inputs == client.queries


# --------------------------------------------------------------------------------------------
# the local server's own checks
# --------------------------------------------------------------------------------------------
def raw_post(server: LocalServer, body: bytes, path: str = "/predict", length: str | None = None) -> tuple[int, Any]:
    """POST raw bytes to the server; returns the status and the decoded JSON answer."""
    host, port = server.url.split("//")[1].split("/")[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.putrequest("POST", path)
        connection.putheader("Content-Length", length if length is not None else str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, orjson.loads(response.read())
    finally:
        connection.close()


def test_local_server_refuses_bad_requests(model: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    local, x, _ = model
    with serve_classifier(local, max_body_bytes=100_000, max_batch=50) as server:
        assert raw_post(server, b"{not json")[0] == 400
        assert raw_post(server, b"[1, 2]")[0] == 400
        assert raw_post(server, orjson.dumps({"inputs": [[1, 2], [3]]}))[0] == 400
        assert raw_post(server, orjson.dumps({"inputs": [["a"]]}))[0] == 400
        status, answer = raw_post(server, orjson.dumps({"inputs": (x[:2] * 3).tolist()}))
        assert status == 400 and "outside the classifier's bounds" in answer["error"]
        status, answer = raw_post(server, orjson.dumps({"inputs": [[0.5] * 64]}))
        assert status == 400 and "expected inputs of shape" in answer["error"]
        assert raw_post(server, orjson.dumps({"inputs": x.repeat(3, 1, 1, 1)[:51].tolist()}))[0] == 413
        assert raw_post(server, b"x" * 100_001)[0] == 413
        assert raw_post(server, b"{}", length="abc")[0] == 400
        assert raw_post(server, b"{}", path="/elsewhere")[0] == 404
        status, answer = raw_post(server, orjson.dumps({"inputs": x[:2].tolist()}))
        assert status == 200 and len(answer["scores"]) == 2
        assert server.requests == 1 and server.inputs == 2  # refused requests reach no model


def test_local_server_maps_a_spent_model_budget_to_429(
    model: tuple[TorchClassifier, torch.Tensor, torch.Tensor],
) -> None:
    local, x, _ = model
    limited = TorchClassifier(local.module, SHAPE, query_budget=5)
    with serve_classifier(limited) as server:
        client = remote(server.url)
        client.predict(x[:5])
        with pytest.raises(QueryBudgetExceeded, match=r"HTTP 429: query budget of 5 spent"):
            client.predict(x[:1])


def test_an_extraction_stops_cleanly_at_the_budget_of_a_remote_endpoint(
    model: tuple[TorchClassifier, torch.Tensor, torch.Tensor],
) -> None:
    """The served model's budget (HTTP 429) ends the attack with a result and a reason, not an error."""
    local, _, _ = model
    split = load_digits_images(seed=0)
    limited = TorchClassifier(local.module, SHAPE, query_budget=70)
    extraction = ModelExtraction(
        "natural", lambda: SmallCNN(width=4), budget=200, rounds=3, epochs=1, min_steps=5, query_batch=20
    )
    with serve_classifier(limited) as server:
        client = remote(server.url)  # the attacker does not know the endpoint's budget
        labels = local.predict(split.x_test[:100])
        result = extraction.extract(
            client, split.x_test[100:], split.x_test[:100], split.y_test[:100], target_test_labels=labels
        )
        assert server.inputs == 70 == limited.queries  # the endpoint answered exactly its budget
    # Schedule 50, 100, 200 in batches of 20: 50 answered, then 20 more; the next batch is refused with 429.
    assert [point.queries for point in result.curve] == [50, 70]
    assert result.stop_reason is not None and "refused further queries after 70" in result.stop_reason
    assert "HTTP 429" in result.stop_reason
    assert result.inputs.shape[0] == 70
    assert result.queries == client.queries == 90  # the refused batch counts too: it was sent


def test_local_server_reports_a_failing_model_as_500(model: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    local, x, _ = model

    class Broken(TorchClassifier):
        """A model that crashes on every input."""

        def _labels(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("CUDA out of memory")

    with serve_classifier(Broken(local.module, SHAPE), output="labels") as server:
        with pytest.raises(ClassifierError, match=r"HTTP 500: the model failed on this input$"):
            remote(server.url, output="labels").predict(x[:2])
        assert server.requests == 0


def test_scores_server_needs_a_scores_classifier(model: tuple[TorchClassifier, torch.Tensor, torch.Tensor]) -> None:
    local, _, _ = model

    class Blind(TorchClassifier):
        """Labels only."""

    blind = Blind(local.module, SHAPE)
    blind.capabilities = frozenset({Capability.LABELS})
    with pytest.raises(MissingCapabilityError, match="scores endpoint needs capability scores"):
        serve_classifier(blind)


# --------------------------------------------------------------------------------------------
# misbehaving endpoints, with a scripted server
# --------------------------------------------------------------------------------------------
class Scripted(BaseHTTPRequestHandler):
    """Answers every POST with the server's scripted status and body (after an optional delay)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        script = self.server.script  # type: ignore[attr-defined]
        script["headers"] = dict(self.headers)
        if script.get("delay"):
            time.sleep(script["delay"])
        body = script["body"]
        self.send_response(script.get("status", 200))
        for name, value in script.get("extra", {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(OSError):  # the client may have given up (timeout test)
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@contextmanager
def scripted(**script: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """A server on an ephemeral port answering with ``script``; yields its URL and the script (headers seen)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    server.daemon_threads = True
    server.script = script  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/predict", script
    finally:
        server.shutdown()
        server.server_close()


X2 = torch.full((2, *SHAPE), 0.5)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>oops</html>", "not valid JSON"),
        (b'{"scores": [[NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0]]}', "not valid JSON"),
        (b"[1, 2]", "must be a JSON object, got a list of 2"),
        (b'{"labels": [1, 2]}', "'scores' must be a list of 2 rows, got nothing"),
        (orjson.dumps({"scores": [[0.1] * 10]}), "'scores' must be a list of 2 rows, got a list of 1"),
        (
            orjson.dumps({"scores": [[0.1] * 10, [0.1] * 9]}),
            "scores row 1 must be a list of 10 numbers, got a list of 9",
        ),
        (orjson.dumps({"scores": [[0.1] * 10, ["0.1"] * 10]}), "scores row 1 holds a non-numeric value '0.1'"),
        (orjson.dumps({"scores": [[0.1] * 10, [True] * 10]}), "non-numeric value True"),
        (orjson.dumps({"scores": [[0.1] * 10, [1e300] * 10]}), "NaN or infinite"),
        (orjson.dumps({"scores": "many"}), "got str 'many'"),
    ],
)
def test_malformed_scores_give_clear_errors(body: bytes, message: str) -> None:
    with scripted(body=body) as (url, _):
        client = remote(url)
        with pytest.raises(ClassifierError, match="sent a malformed response: .*" + message.replace("[", r"\[")):
            client.probabilities(X2)
        assert client.queries == 2  # the inputs went out, so they count


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([1], "'labels' must be a list of 2 class indices, got a list of 1"),
        ([1, 10], r"label 1 must be a class index in \[0, 10\), got 10"),
        ([1, -1], "got -1"),
        ([1, 2.5], "got 2.5"),
        ([1, "2"], "got '2'"),
        ([1, False], "got False"),
    ],
)
def test_malformed_labels_give_clear_errors(labels: list[Any], message: str) -> None:
    with scripted(body=orjson.dumps({"labels": labels})) as (url, _), pytest.raises(ClassifierError, match=message):
        remote(url, output="labels").predict(X2)


def test_integral_float_labels_are_accepted_and_headers_are_sent() -> None:
    with scripted(body=orjson.dumps({"labels": [3.0, 4]})) as (url, script):
        client = remote(url, output="labels", headers={"Authorization": "Bearer s3cret"})
        assert client.predict(X2).tolist() == [3, 4]
        assert script["headers"]["Authorization"] == "Bearer s3cret"
        assert script["headers"]["Content-Type"] == "application/json"
        assert "s3cret" not in repr(client)


def test_http_errors_redirects_timeouts_and_dead_servers() -> None:
    cases = [
        ({"status": 503, "body": orjson.dumps({"error": "model warming up"})}, r"answered HTTP 503: model warming up$"),
        ({"status": 500, "body": b"<h1>boom</h1>"}, r"answered HTTP 500$"),
        ({"status": 302, "body": b"", "extra": {"Location": "http://127.0.0.1:1/elsewhere"}}, "answered HTTP 302"),
    ]
    for script, message in cases:
        with scripted(**script) as (url, _), pytest.raises(ClassifierError, match=message):
            remote(url).predict(X2)
    with scripted(body=b'{"scores": []}', delay=1.0) as (url, _):
        started = time.perf_counter()
        with pytest.raises(ClassifierError, match=r"did not answer within 0.2 s"):
            remote(url, timeout=0.2).predict(X2)
        assert time.perf_counter() - started < 0.9
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = remote(f"http://127.0.0.1:{port}/predict?key=hidden")
    with pytest.raises(ClassifierError, match=r"endpoint http://127.0.0.1:\d+/predict unreachable") as caught:
        client.predict(X2)
    assert "hidden" not in str(caught.value)  # query strings (which may hold keys) stay out of messages


def test_a_429_is_a_spent_budget_and_names_when_to_retry() -> None:
    script = {"status": 429, "body": orjson.dumps({"error": "rate limit"}), "extra": {"Retry-After": "30"}}
    with (
        scripted(**script) as (url, _),
        pytest.raises(QueryBudgetExceeded, match=r"HTTP 429: rate limit \(retry after 30\)$"),
    ):
        remote(url).predict(X2)
    with scripted(status=429, body=b"") as (url, _), pytest.raises(QueryBudgetExceeded, match=r"answered HTTP 429$"):
        remote(url).predict(X2)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "must use http or https, got file scheme"),
        ("ftp://example.org/model", "must use http or https"),
        ("example.org/predict", "must use http or https, got no scheme"),
        ("http:///predict", "has no host"),
        ("http://user:pw@example.org/predict", "must not embed credentials"),
        ("http://example.org:99999/predict", "malformed"),
    ],
)
def test_only_plain_http_urls_are_accepted(url: str, message: str) -> None:
    with pytest.raises(ClassifierError, match=message):
        remote(url)


def test_constructor_checks_its_options() -> None:
    with pytest.raises(ClassifierError, match="output must be"):
        remote("http://127.0.0.1:1/", output="logits")
    with pytest.raises(ClassifierError, match="timeout"):
        remote("http://127.0.0.1:1/", timeout=0)
    with pytest.raises(ClassifierError, match="batch_size"):
        remote("http://127.0.0.1:1/", batch_size=0)
