#!/usr/bin/env python3
"""Publishes touchpoint events to rapport from Python, with no rapport code.

Any Kafka client is a first-class producer when its records carry:
  key      the customer id (UTF-8), hashed with murmur2 like Kafka's Java client
  value    a rapport.v1.Envelope in protobuf binary
  headers  CloudEvents binary mode: ce_specversion, ce_id, ce_type, ce_source,
           ce_time, ce_subject, content-type
  timestamp  occurred_at, in milliseconds

Generate the protobuf classes first:
  protoc -I schemas --python_out=build/python schemas/rapport/v1/*.proto
then:
  PYTHONPATH=build/python python3 examples/python/publish_from_python.py \
      --brokers 127.0.0.1:9092 --topic cx.events --customers c-1001,c-1002
"""
import argparse
import sys
import uuid

from confluent_kafka import Producer
from rapport.v1 import envelope_pb2, common_pb2


def purchase(customer_id: str, n: int) -> envelope_pb2.Envelope:
    event = envelope_pb2.Envelope(
        event_id=str(uuid.uuid4()),  # any RFC 9562 UUID; rapport itself issues UUIDv7
        customer_id=customer_id,
        source="python/example",
        channel=common_pb2.CHANNEL_WEB,
    )
    event.occurred_at.GetCurrentTime()
    event.recorded_at.GetCurrentTime()
    order = event.purchase_completed
    order.order_id = f"py-{n}"
    order.total.currency = "EUR"
    order.total.amount = f"{10 + n}.50"
    item = order.items.add(sku="sku-py", category="groceries", quantity=1)
    item.unit_price.currency = "EUR"
    item.unit_price.amount = order.total.amount
    return event


def cloudevents_headers(event: envelope_pb2.Envelope) -> list:
    payload = event.WhichOneof("payload")
    type_name = event.DESCRIPTOR.fields_by_name[payload].message_type.full_name
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", event.event_id.encode()),
        ("ce_type", type_name.encode()),  # e.g. rapport.v1.PurchaseCompleted
        ("ce_source", event.source.encode()),
        ("ce_time", event.occurred_at.ToJsonString().encode()),
        ("ce_subject", event.customer_id.encode()),
        ("content-type", b"application/protobuf; proto=rapport.v1.Envelope"),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="cx.events")
    parser.add_argument("--customers", default="c-1001,c-1002,c-1003")
    args = parser.parse_args()

    producer = Producer({
        "bootstrap.servers": args.brokers,
        # librdkafka's default partitioner is CRC32-based; rapport and Kafka's
        # Java client hash keys with murmur2. This line keeps each customer on
        # the partition rapport expects.
        "partitioner": "murmur2_random",
        "enable.idempotence": True,  # retries never duplicate an event
        "acks": "all",
    })
    failures = []

    def on_delivery(error, message):
        if error is not None:
            failures.append(error)
        else:
            print(f"{message.key().decode()} -> partition {message.partition()} offset {message.offset()}")

    for n, customer_id in enumerate(args.customers.split(",")):
        event = purchase(customer_id, n)
        producer.produce(
            args.topic,
            key=event.customer_id.encode(),
            value=event.SerializeToString(),
            headers=cloudevents_headers(event),
            timestamp=event.occurred_at.ToMilliseconds(),
            on_delivery=on_delivery,
        )
    producer.flush(30)
    for error in failures:
        print(f"not delivered: {error}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
