"""kombu's Redis transport, with two crashes on a lost connection made warnings.

When the connection to Redis breaks, the worker closes its channel and opens a new
one. With kombu 5.7.0, two things then raise AttributeError and the worker exits with
"Unrecoverable error" (seen when Redis restarts under load):

- Channel.close() drops its connection pools before the base class restores the
  channel's unacknowledged messages, and the transport has no client left to build a
  new pool from;
- a task that was running across the reconnect is acknowledged on its old, closed
  channel, which has no connection.

Neither could reach Redis anyway. The messages stay in the `unacked` hash: Redis's
visibility timeout puts them back later, where their claim is refused (the attempt
already ran), and InfiniTrain's monitor re-publishes any job still waiting sooner.
Drop this module when kombu handles a closed channel in these two places.
"""

import logging
from typing import Any

from kombu.transport import redis

logger = logging.getLogger(__name__)


class QoS(redis.QoS):
    def restore_unacked(self, client: Any = None) -> Any:
        if client is None and self._channel_closed():
            delivered: dict[str, Any] = self._delivered or {}
            logger.warning(
                "Broker connection gone: %s unacknowledged message(s) left for the "
                "visibility timeout and reconciliation",
                len(delivered),
            )
            delivered.clear()
            return None
        return super().restore_unacked(client)

    def ack(self, delivery_tag: Any) -> None:
        if self._channel_closed():
            logger.warning(
                "Broker connection gone: message %s not acknowledged", delivery_tag
            )
            return
        super().ack(delivery_tag)

    def reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        if self._channel_closed():
            logger.warning(
                "Broker connection gone: message %s not rejected", delivery_tag
            )
            return
        super().reject(delivery_tag, requeue=requeue)

    def _channel_closed(self) -> bool:
        connection = getattr(self.channel, "connection", None)
        return connection is None or connection.client is None


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
