"""The Flask application factory: nothing happens at import time."""

from __future__ import annotations

from flask import Flask

from review_ui.context import EXTENSION
from review_ui.formatting import ago, when
from scanner.config import Settings
from service.models import iso
from service.services import Services
from service.webhooks import check_secrets


def create_app(settings: Settings | None = None, services: Services | None = None) -> Flask:
    """Build the app; ``services`` carries the database, blobs and job queue to use."""
    from review_ui.api import bp as api_bp
    from review_ui.cdn import bp as cdn_bp
    from review_ui.health import bp as health_bp
    from review_ui.problems import register_error_handlers
    from review_ui.security import csrf, init_security
    from review_ui.views import bp as desk_bp

    settings = settings or (services.settings if services else Settings.from_env())
    check_secrets(settings)  # a bad secret stops the app here, not on every webhook
    if services is None:
        from service.jobs import RecordingJobQueue

        # Without a queue the API still answers; scans then wait for a sweeper with one.
        services = Services.from_settings(settings, RecordingJobQueue())
    app = Flask(__name__)
    # The webhook reads its own body in chunks; this cap covers every other route.
    app.config["MAX_CONTENT_LENGTH"] = settings.archive.max_bundle_bytes + 1024 * 1024
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions[EXTENSION] = services
    register_error_handlers(app)
    init_security(app, settings)
    # The API authenticates each call (signatures, bearer tokens); a call made with a desk
    # session checks its CSRF header itself (review_ui.actors).
    csrf.exempt(api_bp)
    app.register_blueprint(health_bp)
    app.register_blueprint(cdn_bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(desk_bp)
    app.jinja_env.globals["iso"] = iso
    app.jinja_env.filters["when"] = when
    app.jinja_env.filters["ago"] = ago
    return app
