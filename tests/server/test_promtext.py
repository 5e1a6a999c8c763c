"""/metrics numbers as etcd's Go client prints them (strconv.FormatFloat 'g', -1), families
sorted by name; the output parses as Prometheus text. Expected strings are Go's output."""

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from raftkv.server.promtext import go_float, text_format


@pytest.mark.parametrize(
    ("value", "go"),
    [
        (1.0, "1"),
        (0.0, "0"),
        (20480.0, "20480"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (2147483648.0, "2.147483648e+09"),
        (1234567.0, "1.234567e+06"),
        (0.001, "0.001"),
        (0.0001, "0.0001"),
        (1e-05, "1e-05"),
        (0.00012, "0.00012"),
        (-3.25, "-3.25"),
        (8.192, "8.192"),
        (float("inf"), "+Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_go_float(value: float, go: str) -> None:
    assert go_float(value) == go


def test_text_format_sorts_families_and_prints_integers() -> None:
    reg = CollectorRegistry(auto_describe=False)
    g = Gauge("zeta_bytes", "Z.", registry=reg)
    g.set(2147483648)
    c = Counter("alpha_things", "A thing\\n.", ["To"], registry=reg)
    c.labels("8e9e05c52164694d").inc(3)
    h = Histogram("mid_seconds", "M.", buckets=(0.001, 0.002), registry=reg)
    h.observe(0.0015)
    text = text_format(reg.collect()).decode()
    assert text.splitlines() == [
        "# HELP alpha_things_total A thing\\\\n.",
        "# TYPE alpha_things_total counter",
        'alpha_things_total{To="8e9e05c52164694d"} 3',
        "# HELP mid_seconds M.",
        "# TYPE mid_seconds histogram",
        'mid_seconds_bucket{le="0.001"} 0',
        'mid_seconds_bucket{le="0.002"} 1',
        'mid_seconds_bucket{le="+Inf"} 1',
        "mid_seconds_sum 0.0015",
        "mid_seconds_count 1",
        "# HELP zeta_bytes Z.",
        "# TYPE zeta_bytes gauge",
        "zeta_bytes 2.147483648e+09",
    ]
    names = [f.name for f in text_string_to_metric_families(text)]
    assert names == ["alpha_things", "mid_seconds", "zeta_bytes"]
