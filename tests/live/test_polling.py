"""Argo CD's own polling, at its defaults: one commit to gitops-repo with no refresh triggered and no webhook
(what an operator gets without GitLab's webhook), from the push to the change live in the cluster.

The wait (up to 7 min of Argo CD's timers) is watched from a thread (tests/live/conftest.py PolledCommit),
which the live alert test starts before its own wait on Prometheus' and Alertmanager's timers, so the two
waits overlap instead of adding up. This module's name puts it after that test (pytest runs tests/live in
file-name order); run alone, it starts the commit itself. Measured into reports/argo-cd-polling.json."""

from __future__ import annotations

from tests.live.conftest import Measurements

measure = Measurements("argo-cd-polling")
report = measure.report_fixture()


def test_a_commit_goes_live_by_argo_cd_s_own_polling(argo_polling):
    took = argo_polling.result()
    measure.record("commit to live, Argo CD's default polling (no refresh)", took)
    assert took > 0
