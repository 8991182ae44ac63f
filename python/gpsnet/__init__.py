"""GPSNet in Caffe."""
import os

# The fork's CPU loops are OpenMP (docs/fork.md "CPU threads"). With the default (active) wait policy
# the threads spin at every barrier, and two trainings on a 2-core machine ran 8x slower (5.9 against
# 0.71 s per small Ad. Fuse step); passive waiting costs a single run about 14 % (0.54 against 0.48 s).
# Set before pycaffe loads libgomp, which reads it once; OMP_WAIT_POLICY=ACTIVE in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
