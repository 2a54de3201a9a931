"""Running a backend's instances at once, as the harness's worker pool does."""

import threading


def predict_per_instance(backend, batches, instances: int, repeats: int = 1) -> list:
    """Predict batch ``k`` on instance ``k % instances``, one thread per instance
    (never two threads on one instance); each batch ``repeats`` times.
    Returns the last output of each batch, in batch order."""
    results = [None] * len(batches)

    def work(i):
        for _ in range(repeats):
            for k in range(i, len(batches), instances):
                results[k] = backend.predict(batches[k], i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(instances)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results
