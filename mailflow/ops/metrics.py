"""The optional Prometheus endpoint (``[metrics] enabled = true``), on a loopback address.

Every figure is read from the store at scrape time rather than counted in the process:
the ledger and the outbox already are the counters (totals since the store began, so they
survive restarts and add up across several daemons on one PostgreSQL store), and a
scrape cannot disturb the loop. prometheus_client is the reference implementation of the
exposition format and is well kept; only its text server and metric families are used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from mailflow.store.claims import Process, holders
from mailflow.store.figures import (
    daemon_status,
    mails_by_status,
    messages_by_outcome,
    oldest_pending,
    overdue_requests,
    released_claims,
    vanished_mail,
)
from mailflow.store.repository import Store
from mailflow.store.schema import OutboxStatus

log = logging.getLogger("mailflow.ops.metrics")


class StoreCollector(Collector):
    """Collect mailflow's figures from the store on each scrape."""

    def __init__(self, store: Callable[[], Store], name: str, clock: Callable[[], datetime]):
        self.store, self.name, self.clock = store, name, clock
        self.here = Process.this()

    def collect(self) -> Iterator[Any]:
        """Yield the metric families (one query each, all cheap aggregates)."""
        now = self.clock()
        with self.store().transaction() as session:
            by_outcome = messages_by_outcome(session)
            statuses = mails_by_status(session)
            oldest = oldest_pending(session)
            overdue = overdue_requests(session, now)
            daemon = daemon_status(session, self.name)
            gaps = vanished_mail(session)
            released = released_claims(session)
            gone_claims = sum(h.claims for h in holders(session, self.here) if h.gone)
        messages = CounterMetricFamily(
            "mailflow_messages", "Inbound messages handled, by outcome", labels=["outcome"]
        )
        for outcome, count in by_outcome:
            messages.add_metric([outcome], count)
        yield messages
        yield CounterMetricFamily(
            "mailflow_mails_sent",
            "Outgoing mails accepted by the SMTP server",
            value=statuses.get(OutboxStatus.SENT, 0),
        )
        yield CounterMetricFamily(
            "mailflow_mails_failed",
            "Outgoing mails given up on (undeliverable)",
            value=statuses.get(OutboxStatus.FAILED, 0),
        )
        yield CounterMetricFamily(
            "mailflow_outbox_claims_released",
            "Outgoing mails released from the claim of a daemon that was gone",
            value=int(released or 0),
        )
        yield GaugeMetricFamily(
            "mailflow_outbox_claimed_by_gone_daemons",
            "Outgoing mails still claimed by daemons that are gone (released at once by a "
            "running daemon)",
            value=gone_claims,
        )
        yield GaugeMetricFamily(
            "mailflow_outbox_pending",
            "Outgoing mails waiting to be sent",
            value=statuses.get(OutboxStatus.PENDING, 0),
        )
        yield GaugeMetricFamily(
            "mailflow_outbox_oldest_pending_age_seconds",
            "Age of the oldest mail waiting to be sent (0 when none)",
            value=0.0 if oldest is None else max(0.0, (now - oldest).total_seconds()),
        )
        yield CounterMetricFamily(
            "mailflow_mailbox_gaps",
            "Messages that vanished from the mailbox (moved or deleted) before mailflow "
            "fetched them: never processed",
            value=gaps or 0,
        )
        yield GaugeMetricFamily(
            "mailflow_overdue_stages",
            "Requests whose current stage is past its deadline",
            value=overdue or 0,
        )
        if daemon is not None:
            yield GaugeMetricFamily(
                "mailflow_imap_connected",
                "1 when the daemon's IMAP connection is up",
                value=int(daemon.imap_connected),
            )
            yield GaugeMetricFamily(
                "mailflow_heartbeat_timestamp_seconds",
                "Last heartbeat of the daemon loop",
                value=daemon.heartbeat_at.timestamp(),
            )
            if daemon.last_wake_at is not None:
                yield GaugeMetricFamily(
                    "mailflow_last_idle_wakeup_timestamp_seconds",
                    "Last time the IMAP server announced new mail",
                    value=daemon.last_wake_at.timestamp(),
                )


class MetricsServer:
    """The HTTP endpoint; stop() when the daemon stops."""

    def __init__(self, listen: str, collector: Collector) -> None:
        host, _, port = listen.rpartition(":")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._server, self._thread = start_http_server(
            int(port), host.strip("[]"), registry=self.registry
        )
        log.info("metrics on http://%s/metrics", listen)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
