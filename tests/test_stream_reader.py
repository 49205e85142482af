"""The stream's reader hand-over (edge_guard.stream_reader) and latency statistics (edge_guard.latency)."""

import math
import threading

import numpy as np
import pytest

from edge_guard.latency import Durations
from edge_guard.stream_reader import Mailbox


def _rank(values, q):
    """The nearest-rank percentile."""
    return sorted(values)[max(0, math.ceil(q / 100 * len(values)) - 1)]


def test_mailbox_keeps_the_newest():
    box = Mailbox()
    assert box.put(1) is None and box.put(2) == 1  # 1 replaced: the caller counts it
    assert box.get(0) == 2 and box.get(0.01) is None
    box.put(3)
    box.close()
    assert box.put(4) == 4  # not delivered after close
    assert box.get(0) == 3 and box.get(0) is None


def test_mailbox_wait_empty():
    box = Mailbox()
    box.put(1)
    taker = threading.Timer(0.05, box.get)
    taker.start()
    assert box.wait_empty()  # returns once the checker took the frame
    box.close()
    assert not box.wait_empty()
    taker.join()


def test_durations_percentiles_in_constant_memory():
    rng = np.random.default_rng(0)
    values = rng.lognormal(1.5, 0.8, 5000)
    d = Durations()
    for v in values:
        d.add(v)
    s = d.summary()
    assert s["p50"] == pytest.approx(_rank(values, 50), rel=0.007)
    assert s["p99"] == pytest.approx(_rank(values, 99), rel=0.007)
    assert s["mean"] == pytest.approx(values.mean()) and s["max"] == values.max()
    assert Durations().summary() is None
