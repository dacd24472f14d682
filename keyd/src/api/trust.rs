//! Trust between clusters: the admins' exchange calls, the rendezvous the other
//! cluster's keyd calls (public: the invitation's secret, proved, admits it), and the
//! trusted clusters nodes read (docs/trust-exchange.md).

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::admin::committed;
use super::body::{Body, Format};
use super::error::ErrorBody;
use super::{ApiError, principal};
use crate::service::Service;
use crate::wire::{
    Rendezvous, RendezvousReply, RevokeRequest, TrustAccept, TrustConfirm, TrustGrant,
    TrustIntroduce, TrustInvited, TrustRelay, TrustReset, TrustSessionView, TrustSynced,
    TrustedClusters,
};

/// The URL the caller reached this keyd at (what the other cluster's keyd is told,
/// unless the request names one).
fn own_url(req: &HttpRequest) -> String {
    format!("https://{}", req.connection_info().host())
}

/// Opens a trust session and returns its invitation link (admin, `trust.invite`): what
/// this cluster grants the other — level, permissions, end — and the name shown.
#[utoipa::path(post, path = "/v1/trust/invite", tag = "trust",
    request_body(content = TrustGrant),
    responses((status = 201, body = TrustInvited), (status = "4XX", body = ErrorBody)))]
pub async fn invite(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<TrustGrant>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, ask, url) = (svc.clone(), body.0, own_url(&req));
    let made = committed("trust_invite", move || s.trust_invite(&who, ask, url)).await?;
    Format::wanted(&req).reply(StatusCode::CREATED, &made)
}

/// Answers an invitation (admin, `trust.accept`): this keyd joins the session at the
/// inviter's keyd and returns the inviter's persona, for the admin to consent to.
#[utoipa::path(post, path = "/v1/trust/accept", tag = "trust",
    request_body(content = TrustAccept),
    responses((status = 200, body = TrustSessionView), (status = "4XX", body = ErrorBody)))]
pub async fn accept(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<TrustAccept>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, ask) = (svc.clone(), body.0);
    let view = committed("trust_accept", move || s.trust_accept(&who, ask)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &view)
}

/// Where a session stands: its state, the other side's persona, the code (admin).
#[utoipa::path(get, path = "/v1/trust/sessions/{id}", tag = "trust",
    responses((status = 200, body = TrustSessionView), (status = "4XX", body = ErrorBody)))]
pub async fn session(
    req: HttpRequest,
    svc: web::Data<Service>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let s = svc.clone();
    let view = committed("trust_session", move || s.trust_session(&who, &id)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &view)
}

/// The responder's consent: what it grants the inviter (admin).
#[utoipa::path(post, path = "/v1/trust/sessions/{id}/consent", tag = "trust",
    request_body(content = TrustGrant),
    responses((status = 200, body = TrustSessionView), (status = "4XX", body = ErrorBody)))]
pub async fn consent(
    req: HttpRequest,
    svc: web::Data<Service>,
    id: web::Path<String>,
    body: Body<TrustGrant>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, ask, url) = (svc.clone(), body.0, own_url(&req));
    let view = committed("trust_consent", move || {
        s.trust_consent(&who, &id, ask, url)
    })
    .await?;
    Format::wanted(&req).reply(StatusCode::OK, &view)
}

/// The code confirmed: the inviter's admin types its last digit, the responder's admin
/// says whether the codes match. Once both did, each keyd records the trust.
#[utoipa::path(post, path = "/v1/trust/sessions/{id}/confirm", tag = "trust",
    request_body(content = TrustConfirm),
    responses((status = 200, body = TrustSessionView), (status = "4XX", body = ErrorBody)))]
pub async fn confirm(
    req: HttpRequest,
    svc: web::Data<Service>,
    id: web::Path<String>,
    body: Body<TrustConfirm>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, ask) = (svc.clone(), body.0);
    let view = committed("trust_confirm", move || s.trust_confirm(&who, &id, ask)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &view)
}

/// A step of an exchange, from the responder's keyd (public; the proof of the
/// invitation's secret admits it).
#[utoipa::path(post, path = "/v1/trust/rendezvous", tag = "trust",
    request_body(content = Rendezvous),
    responses((status = 200, body = RendezvousReply), (status = "4XX", body = ErrorBody)))]
pub async fn rendezvous(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<Rendezvous>,
) -> Result<HttpResponse, ApiError> {
    let (s, call) = (svc.clone(), body.0);
    let reply = committed("trust_rendezvous", move || s.rendezvous(call)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &reply)
}

/// The clusters this one trusts now, with what each is granted (`trust.list`).
#[utoipa::path(get, path = "/v1/trust/clusters", tag = "trust",
    responses((status = 200, body = TrustedClusters), (status = "4XX", body = ErrorBody)))]
pub async fn clusters(req: HttpRequest, svc: web::Data<Service>) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let clusters = svc.trusted_clusters(&who)?;
    Format::wanted(&req).reply(StatusCode::OK, &TrustedClusters { clusters })
}

/// A trusted cluster's chain as held (verified), as CBOR chain records (`trust.list`).
#[utoipa::path(get, path = "/v1/trust/clusters/{root}/chain", tag = "trust",
    responses((status = 200, content_type = "application/cbor", body = Vec<u8>), (status = "4XX", body = ErrorBody)))]
pub async fn cluster_chain(
    req: HttpRequest,
    svc: web::Data<Service>,
    root: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let bytes = svc.trusted_chain(&who, &root)?;
    Ok(HttpResponse::Ok()
        .content_type("application/cbor")
        .body(bytes))
}

/// Ends the trust in a cluster: `untrust` in the branch log, its root blocklisted
/// (admin, `trust.revoke`); the clusters still trusted.
#[utoipa::path(post, path = "/v1/trust/clusters/{root}/revoke", tag = "trust",
    request_body(content = RevokeRequest),
    responses((status = 200, body = TrustedClusters), (status = "4XX", body = ErrorBody)))]
pub async fn revoke(
    req: HttpRequest,
    svc: web::Data<Service>,
    root: web::Path<String>,
    body: Body<RevokeRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, reason) = (svc.clone(), body.0.reason);
    let clusters = committed("trust_revoke", move || {
        s.revoke_trust(&who, &root, &reason)?;
        s.trusted_clusters(&who)
    })
    .await?;
    Format::wanted(&req).reply(StatusCode::OK, &TrustedClusters { clusters })
}

/// Runs the exchange again with a trusted cluster, over the keys recorded, no code (a
/// keyd moved, was rebuilt or has a newer chain): each side keeps the grant it recorded
/// (admin, `trust.invite`).
#[utoipa::path(post, path = "/v1/trust/clusters/{root}/reset", tag = "trust",
    responses((status = 200, body = TrustSessionView), (status = "4XX", body = ErrorBody)))]
pub async fn reset(
    req: HttpRequest,
    svc: web::Data<Service>,
    root: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, url) = (svc.clone(), own_url(&req));
    let view = committed("trust_reset", move || s.trust_reset(&who, &root, url)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &view)
}

/// A trusted cluster's keyd asks for a reset (public; its signature, by the branch key
/// of the chain recorded for it, admits it).
#[utoipa::path(post, path = "/v1/trust/reset", tag = "trust",
    request_body(content = TrustReset),
    responses((status = 200, body = TrustSessionView), (status = "4XX", body = ErrorBody)))]
pub async fn reset_request(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<TrustReset>,
) -> Result<HttpResponse, ApiError> {
    let (s, ask, url) = (svc.clone(), body.0, own_url(&req));
    let view = committed("trust_reset", move || s.reset_request(ask, url)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &view)
}

/// Asks the trusted cluster `{root}` to introduce this cluster to another cluster it
/// trusts (admin, `trust.invite`): no code; the result is at most limited trust, and
/// both `trust` statements name the introducer.
#[utoipa::path(post, path = "/v1/trust/clusters/{root}/introduce", tag = "trust",
    request_body(content = TrustIntroduce),
    responses((status = 200, body = TrustSessionView), (status = "4XX", body = ErrorBody)))]
pub async fn introduce(
    req: HttpRequest,
    svc: web::Data<Service>,
    root: web::Path<String>,
    body: Body<TrustIntroduce>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, ask, url) = (svc.clone(), body.0, own_url(&req));
    let view = committed("trust_introduce", move || {
        s.trust_introduce(&who, &root, ask, url)
    })
    .await?;
    Format::wanted(&req).reply(StatusCode::OK, &view)
}

/// An introduction asked of this keyd by a cluster it trusts (public; that cluster's
/// signature admits it): relayed, signed, to the cluster named.
#[utoipa::path(post, path = "/v1/trust/introduce", tag = "trust",
    request_body(content = TrustRelay),
    responses((status = 200, body = TrustSessionView), (status = "4XX", body = ErrorBody)))]
pub async fn introduce_request(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<TrustRelay>,
) -> Result<HttpResponse, ApiError> {
    let (s, ask) = (svc.clone(), body.0);
    let view = committed("trust_introduce", move || s.introduce_request(ask)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &view)
}

/// An introduction relayed by a cluster this one trusts (public; the introducer's
/// signature admits it): this keyd joins and consents, at most limited.
#[utoipa::path(post, path = "/v1/trust/introduced", tag = "trust",
    request_body(content = TrustRelay),
    responses((status = 200, body = TrustSessionView), (status = "4XX", body = ErrorBody)))]
pub async fn introduced_request(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<TrustRelay>,
) -> Result<HttpResponse, ApiError> {
    let (s, ask, url) = (svc.clone(), body.0, own_url(&req));
    let view = committed("trust_introduce", move || s.introduced_request(ask, url)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &view)
}

/// Pulls every trusted cluster's chain now (admin, `chain.pull`), as the interval does.
#[utoipa::path(post, path = "/v1/trust/sync", tag = "trust",
    responses((status = 200, body = TrustSynced), (status = "4XX", body = ErrorBody)))]
pub async fn sync(req: HttpRequest, svc: web::Data<Service>) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let s = svc.clone();
    let answered = committed("trust_sync", move || s.sync_trusted_now(&who)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &TrustSynced { answered })
}
