"""INT8 calibration from real tracking crops (Q/DQ graphs); not yet built."""
