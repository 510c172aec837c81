"""kiu's benchmarks: each figure is compared with a baseline measured in the same run.

Run them with ``make bench`` (all) or ``make bench-<name>``; each writes
``bench/results/<name>.json`` (figures and the settings used) and
``bench/results/<name>.png``, and ``bench/README.md`` is regenerated from the JSON.
"""
