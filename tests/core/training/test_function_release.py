"""TensorFlow frees a dead traced function without holding the GIL once
`release_functions_without_the_gil` is installed: the function leaves the context, another
Python thread runs while the C++ side destroys it, and errors are TensorFlow's own."""

from __future__ import annotations

import gc
import threading
import time

import pytest
import tensorflow as tf
from tensorflow.python.eager import context

from freezestudio.core.training.function_release import release_functions_without_the_gil

OPS = 300  # removing its function took ~2 ms with the GIL held, traced in < 1 s
ATTEMPTS = 5


@pytest.fixture(scope="module", autouse=True)
def installed():
    assert release_functions_without_the_gil()
    assert release_functions_without_the_gil()  # idempotent


def _traced_function_and_name():
    @tf.function(autograph=False)
    def chain(x):
        for _ in range(OPS):
            x = tf.sin(x) + tf.cos(x)
        return x

    expected = chain(tf.constant(1.0)).numpy()
    name = chain.get_concrete_function(tf.constant(1.0)).function_def.signature.name
    return chain, name, expected


def _drop_while_a_thread_spins(monkeypatch) -> tuple[float, float, list, str]:
    """Drops a traced function while another thread records times as fast as it can;
    returns the removal's start and end, the recorded times and the function's name."""
    chain, name, expected = _traced_function_and_name()
    assert context.context().has_function(name)
    removals, stamps, stop = [], [], threading.Event()
    installed_remove = context.Context.remove_function

    def timed_remove(self, function_name):
        start = time.perf_counter()
        installed_remove(self, function_name)
        removals.append((function_name, start, time.perf_counter()))

    def spin():
        while not stop.is_set():
            stamps.append(time.perf_counter())

    monkeypatch.setattr(context.Context, "remove_function", timed_remove)
    spinner = threading.Thread(target=spin)
    gc.collect()
    spinner.start()
    try:
        time.sleep(0.02)
        del chain
        gc.collect()
    finally:
        stop.set()
        spinner.join()
        monkeypatch.undo()
    assert not context.context().has_function(name)
    (_, start, end), = [r for r in removals if r[0] in (name, name.encode())]
    return start, end, stamps, expected


def test_a_dropped_function_leaves_the_context_while_other_threads_run(monkeypatch):
    # With the GIL held for the removal (TensorFlow's own binding) the spinner can never
    # record a time inside it. Without, it does as soon as the OS gives it a core: on a
    # loaded machine that can take longer than a short removal, hence a few tries.
    for _ in range(ATTEMPTS):
        start, end, stamps, expected = _drop_while_a_thread_spins(monkeypatch)
        if any(start < s < end for s in stamps):
            break
    else:
        pytest.fail(f"no other thread ran during any of {ATTEMPTS} removals")
    again, _, value = _traced_function_and_name()  # tracing and running still work
    assert float(again(tf.constant(1.0))) == pytest.approx(float(value)) == \
        pytest.approx(float(expected))


def test_removing_an_unknown_function_raises_tensorflows_own_error():
    with pytest.raises(tf.errors.InvalidArgumentError, match="non-existent function"):
        context.context().remove_function("no_such_function")
