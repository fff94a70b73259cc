"""Batches prepared ahead of the training step: a background thread (`prefetch`) and ordered
parallel assembly (`parallel_map`). Exceptions of the producer reach the consumer; closing the
iterator stops the thread."""

from __future__ import annotations

import collections
import concurrent.futures
import queue
import threading
from typing import Any, Callable, Iterable, Iterator


def count_from(start: int) -> Iterator[int]:
  step = start
  while True:
    yield step
    step += 1


def parallel_map(fn: Callable[[Any], Any], items: Iterable[Any], num_workers: int
                 ) -> Iterator[Any]:
  """fn(item) for each item, computed by `num_workers` threads, yielded in order.

  At most `num_workers` calls run or wait ahead of the consumer; closing the generator cancels
  the ones not started and waits for the running ones.
  """
  if num_workers < 1:
    raise ValueError(f'num_workers={num_workers} must be >= 1')
  executor = concurrent.futures.ThreadPoolExecutor(num_workers, thread_name_prefix='batch')
  pending: collections.deque = collections.deque()
  try:
    for item in items:
      pending.append(executor.submit(fn, item))
      if len(pending) >= num_workers:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()
  finally:
    for future in pending:
      future.cancel()
    executor.shutdown(wait=True)


class _Raised:
  """An exception of the producer thread, handed to the consumer."""

  def __init__(self, error: BaseException):
    self.error = error


_END = object()


def _produce(source: Iterator[Any], items: queue.Queue, stop: threading.Event) -> None:
  """Producer thread: moves `source` into `items` until exhausted, failed or stopped.

  It holds no reference to the `Prefetcher`, so dropping that object stops the thread.
  """

  def put(item) -> bool:
    while not stop.is_set():
      try:
        items.put(item, timeout=0.05)
        return True
      except queue.Full:
        continue
    return False

  try:
    for item in source:
      if not put(item):
        return
    put(_END)
  except BaseException as error:  # pylint: disable=broad-except
    put(_Raised(error))
  finally:
    close = getattr(source, 'close', None)
    if close is not None:
      try:
        close()
      except Exception:  # pylint: disable=broad-except
        pass


class Prefetcher:
  """Iterates `iterator` in a background thread, up to `size` items ahead (see `prefetch`)."""

  def __init__(self, iterator: Iterable[Any], size: int = 2):
    if size < 1:
      raise ValueError(f'prefetch size={size} must be >= 1')
    self._queue: queue.Queue = queue.Queue(maxsize=size)
    self._stop = threading.Event()
    self._done = False
    self._thread = threading.Thread(target=_produce, args=(iter(iterator), self._queue, self._stop),
                                    name='prefetch', daemon=True)
    self._thread.start()

  def __iter__(self) -> 'Prefetcher':
    return self

  def __next__(self):
    if self._done:
      raise StopIteration
    while True:
      try:
        item = self._queue.get(timeout=0.1)
        break
      except queue.Empty:
        if not self._thread.is_alive() and self._queue.empty():
          self._done = True
          raise StopIteration from None
    if item is _END:
      self.close()
      raise StopIteration
    if isinstance(item, _Raised):
      self.close()
      raise item.error
    return item

  def close(self, timeout: float = 10.0) -> None:
    """Stops the producer thread and waits for it (it finishes the item it is computing)."""
    self._done = True
    self._stop.set()
    while True:  # Unblock a producer waiting on a full queue.
      try:
        self._queue.get_nowait()
      except queue.Empty:
        break
    if self._thread.is_alive() and threading.current_thread() is not self._thread:
      self._thread.join(timeout)

  @property
  def alive(self) -> bool:
    """Whether the producer thread still runs."""
    return self._thread.is_alive()

  def __enter__(self) -> 'Prefetcher':
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def __del__(self):
    stop = getattr(self, '_stop', None)
    if stop is not None:
      stop.set()


def prefetch(iterator: Iterable[Any], size: int = 2) -> Prefetcher:
  """Items of `iterator`, computed up to `size` ahead in a background thread.

  The producer's exceptions are re-raised in the consumer (at the item where they happened).
  `close()` (or leaving a `with` block, or dropping the iterator) stops the thread. Work that
  should overlap the training step goes into `iterator` itself, e.g. a `map` that also calls
  `jax.device_put`. NumPy and HDF5 reads release the GIL, so a thread is enough.
  """
  return Prefetcher(iterator, size)
