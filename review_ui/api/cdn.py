"""The CDN as JSON: the signing key, promoted versions and their retro-scan state, the
retro-scan plan, and un-yank (yank is in review.py, beside the other decisions)."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app, jsonify
from sqlalchemy import select

from review_ui.actors import api_actor
from review_ui.api import bp
from review_ui.api.review import _body, _created, _string
from review_ui.context import services_of
from review_ui.problems import ApiProblemError
from service.cdn import retro
from service.cdn.manifest import PublishedFile
from service.cdn.promote import promoted_data
from service.models import Promotion, RetroGeneration, iso
from service.review import decisions
from service.services import Services


@bp.get("/cdn/keys")
def api_cdn_keys() -> Response:
    """The public key manifests and the blocklist are signed with (no credentials)."""
    response = jsonify(services_of(current_app).signer.keys_document())
    response.headers["Cache-Control"] = "public, max-age=3600"
    return response


def _stale_dict(v: retro.StaleVersion) -> dict[str, Any]:
    return {
        "submission_id": v.submission_id,
        "plugin": v.plugin,
        "version": v.version,
        "published_at": iso(v.published_at),
        "hits": v.hits,
        "ruleset": v.ruleset,
        "advisories": v.advisories,
        "state": v.state,
        "position": v.position,
        "eta": iso(v.eta),
        "retro_state": v.retro_state,
    }


@bp.get("/cdn/retro")
def api_retro() -> Response:
    """Promoted versions whose scan is stale, and when the retro-scans will reach them."""
    api_actor()
    p = retro.progress(services_of(current_app))
    return jsonify(
        {
            "generation": p.generation,
            "reason": p.reason,
            "ruleset": p.current_ruleset,
            "advisories": p.current_advisories,
            "promoted": p.total_promoted,
            "planned": p.planned,
            "running": p.running,
            "done": p.done,
            "per_hour": p.per_hour,
            "stale": [_stale_dict(v) for v in p.stale],
        }
    )


@bp.post("/cdn/retro")
def api_retro_plan() -> Response:
    """Plan a rescan of every stale promoted version now (admins), as a rule change would."""
    api_actor(admin=True)
    svc = services_of(current_app)
    generation = retro.detect(svc, reason="manual")
    started = retro.tick(svc)
    with svc.session() as s:
        planned = s.scalar(select(RetroGeneration.planned).where(RetroGeneration.id == generation))
    return _created({"generation": generation, "planned": planned or 0, "started": started}, 202)


@bp.get("/submissions/<submission_id>/promotion")
def api_promotion(submission_id: str) -> Response:
    """Where a version is on the CDN, or why not."""
    api_actor()
    svc = services_of(current_app)
    with svc.session() as s:
        p = s.scalar(select(Promotion).where(Promotion.submission_id == submission_id))
        if p is None:
            raise ApiProblemError(404, "not-found", "Not Found", "this version was not promoted")
        body = promotion_dict(svc, p)
    return jsonify(body)


def promotion_dict(svc: Services, p: Promotion) -> dict[str, Any]:
    files = [PublishedFile.from_dict(f) for f in (p.files or []) if "integrity" in f]
    where = promoted_data(svc, p, files)
    where.pop("status")  # the submission's; a yanked version says so in yanked_at
    return {
        "state": p.state,
        "in_sync": p.store_synced,
        "published_at": iso(p.published_at),
        "yanked_at": iso(p.yanked_at),
        "yank_reason": p.yank_reason,
        "error": p.error,
        "hits": p.hits,
        **where,
    }


@bp.post("/submissions/<submission_id>/unyank")
def api_unyank(submission_id: str) -> Response:
    """An admin brings a yanked version back; it is published again, verified again."""
    actor = api_actor(admin=True)
    data = _body({"why"}, {"why"})
    try:
        outcome = decisions.unyank(
            services_of(current_app), submission_id, actor, _string(data, "why") or ""
        )
    except decisions.DecisionError as exc:
        raise ApiProblemError(exc.status, exc.code, "Un-yank refused", str(exc)) from None
    return _created({"decision_id": outcome.decision_id, "status": outcome.status})
