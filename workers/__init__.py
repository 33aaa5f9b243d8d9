"""The Celery application and thin tasks that run the service's steps by id."""
