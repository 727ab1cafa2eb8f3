"""quizmesh's benchmarks: `python -m bench` (or `make bench`) runs them and writes bench/out/results.json."""
