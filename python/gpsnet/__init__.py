"""GPSNet in Caffe."""
