"""The service core that the API and the workers share: settings, the typed request and job records, the job store,
event streams, storage, signing, cost and limits. Torch-free, and knows nothing of HTTP or Celery: api/ and worker/
are peers over it, models/ is beneath it."""
