"""Training: datasets, augmentation, Darknet's YOLO v1 objective, the trainer, evaluation, collection."""
