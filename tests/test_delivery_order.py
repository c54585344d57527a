"""Deliveries leave a library in the order of their turns (commit order), whoever is ready first."""

from __future__ import annotations

import threading

from flask_verdant.delivery_order import DeliveryOrder


def test_a_later_turn_waits_for_the_earlier_ones_and_lines_are_dropped_when_served() -> None:
    order = DeliveryOrder()
    first, second = order.take("lib"), order.take("lib")
    other = order.take("other")
    delivered: list[str] = []
    with other:  # another library never waits for this one
        delivered.append("other")
    entered = threading.Event()

    def deliver_second() -> None:
        entered.set()
        with second:
            delivered.append("second")

    thread = threading.Thread(target=deliver_second)
    thread.start()
    assert entered.wait(5)
    thread.join(0.2)
    assert thread.is_alive() and delivered == ["other"]  # still waiting for the first turn
    with first:
        delivered.append("first")
    thread.join(5)
    assert delivered == ["other", "first", "second"]
    assert len(order) == 0


def test_a_turn_whose_delivery_failed_still_lets_the_next_go() -> None:
    order = DeliveryOrder()
    failing, next_turn = order.take("lib"), order.take("lib")
    try:
        with failing:
            raise OSError("fsync failed")
    except OSError:
        pass
    with next_turn:
        pass
    assert len(order) == 0
