"""Helpers of benchmarks/quality_race.py and benchmarks/lstm_step_parity.py (PyTorch references, scorers, report).

They use tfchar only through its command line and the files a run writes, never by importing it.
"""
