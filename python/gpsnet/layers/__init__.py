"""pycaffe Python layers of GPSNet."""
