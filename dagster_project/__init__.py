"""NextBest."""

import gc
import os

# Python's cyclic collector walks its youngest objects every 700 new containers (tuples, dicts,
# lists). The pipeline's steps make millions of short-lived rows and frames, and at 1M customers
# those walks cost 12% of the service export (103 -> 90 s, same peak memory). A pass every 50,000
# keeps cycles collected, just less often. Left alone when the hosting process already chose its own.
PYTHON_DEFAULT_GC_THRESHOLDS = (700, 10, 10)
GC_THRESHOLDS = (50_000, 20, 10)
if gc.get_threshold() == PYTHON_DEFAULT_GC_THRESHOLDS:
    gc.set_threshold(*GC_THRESHOLDS)

# GNU OpenMP (scikit-learn's boosters on Linux) makes a thread that waits at the end of a parallel
# region spin for 300,000 turns before it sleeps. When another process holds a core, the spinning
# thread keeps the one it waits for off the CPU: predicting 1M rows on two threads took 16.0 s on a
# 2-core box with one other busy process, against 5.7 s on one thread. After 2,000 turns it is
# 5.3 s busy and 2.7 s idle (4.8 s on one thread). Set before scikit-learn loads its OpenMP runtime,
# and left alone when the environment already says how threads should wait.
OPENMP_SPIN_ENV = "GOMP_SPINCOUNT"
OPENMP_SPIN_TURNS = "2000"
if not {"OMP_WAIT_POLICY", OPENMP_SPIN_ENV} & set(os.environ):
    os.environ[OPENMP_SPIN_ENV] = OPENMP_SPIN_TURNS
