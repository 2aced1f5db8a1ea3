"""kcm's benchmarks: ``python -m bench`` (``make bench``) measures kcm against bare confluent-kafka loops.

Each benchmark is a program that prints figures and a ratio against a baseline measured in the same
invocation on the same pre-filled topic; none of it is a test with a pass/fail verdict. Results go to
``bench/results/<name>.json`` and ``BENCHMARKS.md`` is regenerated from them.
"""
