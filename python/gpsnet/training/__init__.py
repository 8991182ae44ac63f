"""The parts of ``gpsnet train`` (``gpsnet.train``, the command and its loop): prototxt patching, snapshots,
plots and the learning curve."""
