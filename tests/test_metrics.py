"""What a Prometheus scrape shows of the delivery-latency histogram."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from chatd.metrics import Metrics


def delivery_samples(metrics: Metrics) -> dict[tuple[str, str], float]:
    text = metrics.render().decode()
    family = next(
        f
        for f in text_string_to_metric_families(text)
        if f.name == "chatd_delivery_latency_seconds"
    )
    return {(s.name, s.labels.get("le", "")): s.value for s in family.samples}


def test_frames_of_one_fan_out_count_once_each_in_their_bucket():
    metrics = Metrics()
    metrics.observe_delivery(0.003, 256)  # one message fanned out to 256 sockets
    metrics.observe_delivery(0.001)  # on a bucket's bound: counted in that bucket
    metrics.observe_delivery(7.0, 2)  # above the last bound
    samples = delivery_samples(metrics)
    bucket = "chatd_delivery_latency_seconds_bucket"
    assert samples[(bucket, "0.0005")] == 0
    assert samples[(bucket, "0.001")] == 1
    assert samples[(bucket, "0.0025")] == 1
    assert samples[(bucket, "0.005")] == 257
    assert samples[(bucket, "5.0")] == 257
    assert samples[(bucket, "+Inf")] == 259
    assert samples[("chatd_delivery_latency_seconds_count", "")] == 259
    assert abs(samples[("chatd_delivery_latency_seconds_sum", "")] - (0.768 + 0.001 + 14)) < 1e-9


def test_two_app_instances_keep_their_figures_apart():
    first, second = Metrics(), Metrics()
    first.observe_delivery(0.01, 3)
    assert delivery_samples(second)[("chatd_delivery_latency_seconds_count", "")] == 0
