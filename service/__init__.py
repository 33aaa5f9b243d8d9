"""Gatehouse as a service: submissions, scans as durable steps, callbacks, the service CLI.

Records and their migrations, the registry's webhook and our callbacks, tokens and rate
limits, blob storage, orchestration of a scan across workers. Imports the scanner (the
analysis), never Flask or Celery: the web app (review_ui) and the workers wrap it.
"""
