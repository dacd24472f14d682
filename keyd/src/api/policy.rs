//! Policy endpoints: the policy in force, applying a new one (live), and asking how it
//! decides a request.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};

use super::admin::committed;
use super::body::{Body, Format};
use super::error::ErrorBody;
use super::{ApiError, principal};
use crate::service::Service;
use crate::service::policy::PolicyInForce;
use crate::wire::{PolicyApply, PolicyCheck, PolicyDecision, PolicyShown};

fn shown(p: &PolicyInForce, with_text: bool) -> PolicyShown {
    PolicyShown {
        version: p.version,
        sha256: p.sha256.clone(),
        applied_by: p.applied_by.clone(),
        applied_at: p.applied_at,
        rules: p.policy.len(),
        text: with_text.then(|| p.text.clone()),
    }
}

/// The policy in force, with its text (`policy.show`).
#[utoipa::path(get, path = "/v1/policy", tag = "policy",
    responses((status = 200, body = PolicyShown), (status = "4XX", body = ErrorBody)))]
pub async fn show(req: HttpRequest, svc: web::Data<Service>) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let p = svc.show_policy(&who)?;
    Format::wanted(&req).reply(StatusCode::OK, &shown(&p, true))
}

/// Replaces the policy (`policy.apply`): checked first (`bad_request` naming the rule
/// and field, nothing changed), then stored as the next version and in force for the
/// next request, without a restart.
#[utoipa::path(post, path = "/v1/policy", tag = "policy",
    request_body(content = PolicyApply),
    responses((status = 200, body = PolicyShown), (status = "4XX", body = ErrorBody)))]
pub async fn apply(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<PolicyApply>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (s, text) = (svc.clone(), body.0.text);
    let applied = committed("policy_apply", move || s.apply_policy(&who, &text)).await?;
    Format::wanted(&req).reply(StatusCode::OK, &shown(&applied, false))
}

/// How the policy in force decides a request (`policy.check`); nothing is counted
/// against a rate.
#[utoipa::path(post, path = "/v1/policy/check", tag = "policy",
    request_body(content = PolicyCheck),
    responses((status = 200, body = PolicyDecision), (status = "4XX", body = ErrorBody)))]
pub async fn check(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<PolicyCheck>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let c = body.0;
    let version = svc.policy().version;
    let d = svc.check_policy(&who, &c.principal, &c.op, &c.target)?;
    Format::wanted(&req).reply(
        StatusCode::OK,
        &PolicyDecision {
            allowed: d.allowed,
            rule: d.rule.to_string(),
            reason: d.reason,
            version,
        },
    )
}
