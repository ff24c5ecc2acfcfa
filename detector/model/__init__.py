"""The model: Darknet cfg and weights, the engines that run them, preprocessing and decoding."""
