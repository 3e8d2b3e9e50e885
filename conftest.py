"""Test-session defaults: notebooks run in quick mode unless told otherwise.

Set CS231N_GEN_QUICK=0 to execute the lectures at their full (student) budget.
The variable is set before any notebook kernel starts, so kernels inherit it.
"""
import os

os.environ.setdefault("CS231N_GEN_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
