"""Build: balance the extracted datasets (ML-ROS) into merged training shards."""
