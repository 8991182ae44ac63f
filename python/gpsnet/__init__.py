"""GPSNet in Caffe."""
from gpsnet.threads import openmp_defaults

openmp_defaults()   # before any import of caffe loads libgomp (gpsnet.threads)
