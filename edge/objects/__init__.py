"""Objects: tracking detections across frames, and where each tracked sign stands on the map."""
