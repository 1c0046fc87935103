"""tasks/kube_client.py: a request the control plane answers with a passing error (etcd timing out under
load, 429, 503) is tried again a bounded number of times; a real error is not."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException

from tasks import kube_client

ETCD_TIMEOUT = json.dumps({"kind": "Status", "status": "Failure", "message": "etcdserver: request timed out",
                           "reason": "InternalError", "code": 500}).encode()


class Response:
    def __init__(self, status: int, data: bytes):
        self.status, self.data, self.reason, self.headers = status, data, "reason", {}

    def read(self) -> bytes:
        return self.data

    def getheaders(self) -> dict:
        return {}


class Api:
    """Stands in for the kubernetes ApiClient: answers (or raises) from a list, records each call."""

    class configuration:
        host = "https://198.51.100.11:6443"

    def __init__(self, answers: list, readyz: list[int] | None = None):
        self.answers, self.calls, self.readyz = answers, 0, readyz or []

    def param_serialize(self, method, path, *args, **kwargs):
        return (method, path, {}, None, [])

    def call_api(self, method, path, *args, **kwargs) -> Response:
        if path == "/readyz":
            return Response(self.readyz.pop(0), b"")
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def cluster(answers: list, readyz: list[int] | None = None) -> kube_client.Cluster:
    c = object.__new__(kube_client.Cluster)  # no discovery: only _request is under test
    c.api = Api(answers, readyz)
    return c


@pytest.fixture(autouse=True)
def no_sleep(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(kube_client.time, "sleep", slept.append)
    return slept


@pytest.mark.parametrize("status, body", [(500, ETCD_TIMEOUT), (429, b"{}"), (503, b"{}")])
def test_a_passing_error_is_tried_again_until_the_answer_comes(status, body, no_sleep):
    c = cluster([Response(status, body), Response(status, body), Response(200, b'{"kind": "Pod"}')])
    assert c._request("GET", "/api/v1/x") == {"kind": "Pod"}
    assert c.api.calls == 3 and no_sleep == [1, 2]


def test_retries_are_bounded_and_the_last_error_is_raised(no_sleep):
    c = cluster([Response(500, ETCD_TIMEOUT)] * (len(kube_client.RETRY_DELAYS_S) + 1))
    with pytest.raises(ApiException) as raised:
        c._request("GET", "/api/v1/x")
    assert raised.value.status == 500 and c.api.calls == len(kube_client.RETRY_DELAYS_S) + 1
    assert sum(no_sleep) == sum(kube_client.RETRY_DELAYS_S) <= 60


FORBIDDEN = b'{"message": "nodes \\"k8s-master\\" is forbidden: User \\"kubernetes-admin\\" cannot get resource"}'


def test_a_403_while_the_api_server_is_not_ready_yet_is_waited_for(no_sleep):
    c = cluster([Response(403, FORBIDDEN), Response(200, b'{"kind": "Node"}')], readyz=[500])
    assert c._request("GET", "/api/v1/nodes/k8s-master") == {"kind": "Node"}


def test_a_403_from_a_ready_api_server_is_raised_at_once(no_sleep):
    c = cluster([Response(403, FORBIDDEN)], readyz=[200])
    with pytest.raises(ApiException):
        c._request("GET", "/api/v1/nodes/k8s-master")
    assert c.api.calls == 1 and no_sleep == []


@pytest.mark.parametrize("status, body", [(404, b"{}"), (422, b"{}"), (409, b"{}"),
                                          (500, b'{"message": "etcdserver: mvcc: database space exceeded"}')])
def test_a_real_error_is_raised_at_once(status, body, no_sleep):
    c = cluster([Response(status, body)])
    with pytest.raises(ApiException):
        c._request("GET", "/api/v1/x")
    assert c.api.calls == 1 and no_sleep == []


def refused() -> Exception:
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    return MaxRetryError(None, "/api/v1/nodes", NewConnectionError(None, "Connection refused"))


def test_an_api_server_restarting_is_waited_for(no_sleep):
    c = cluster([refused(), refused(), Response(200, b'{"kind": "Node"}')])
    assert c._request("GET", "/api/v1/nodes") == {"kind": "Node"}
    assert c.api.calls == 3


def test_an_api_server_that_stays_away_ends_in_one_line_naming_it(no_sleep):
    c = cluster([refused()] * (len(kube_client.RETRY_DELAYS_S) + 1))
    with pytest.raises(kube_client.ClusterError, match=r"the API server at https://198.51.100.11:6443 did not answer "
                                                       r"GET /api/v1/nodes .*check kube-apiserver"):
        c._request("GET", "/api/v1/nodes")


def test_a_tls_failure_is_not_waited_for(no_sleep):
    from urllib3.exceptions import MaxRetryError, SSLError

    c = cluster([MaxRetryError(None, "/api", SSLError("certificate verify failed"))])
    with pytest.raises(kube_client.ClusterError):
        c._request("GET", "/api")
    assert c.api.calls == 1 and no_sleep == []
