"""Celery application and thin tasks that run the pipeline by id (issue 5)."""
