"""Runners for other libraries (Torch-RecHub, RecBole), each run as a script in that library's
virtualenv; a package so that ``benchmarks/trh_throughput_worker.py`` imports
``external.run_torch_rechub`` without editing ``sys.path``."""
