"""360DVD panorama video model and pure media code. Never imports FastAPI, Celery or boto3.

Importing this package (and `models.registry`, `models.media`) must not import torch: the API process uses
them without it. Torch-using modules import it themselves.
"""
