"""Queue, job records, storage and the GPU task. Importable without torch: only worker.tasks touches the model."""
