"""Writing to Procore for every flow: the per-company write lock and circuit breaker
(write_guard.py), the hand-over at the rate limit (continuation.py), schedules of write jobs."""
