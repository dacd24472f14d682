//! The REST API (DESIGN.md section 6): routes, request and response bodies, and the
//! client-certificate extractor.

mod error;
mod metrics;

use actix_web::dev::Extensions;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Deserialize;
use serde_json::json;

pub use error::ApiError;
pub use metrics::{Metrics, metrics};

use crate::identity::Principal;
use crate::service::Service;

/// Largest JSON body accepted.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Most items in a batch request.
pub const MAX_BATCH: usize = 1000;

/// The DER client certificate of a connection, stored by [`on_connect`].
#[derive(Clone)]
pub struct PeerCertificate(pub Vec<u8>);

/// Records the client certificate of a TLS connection for the requests on it.
pub fn on_connect(conn: &dyn std::any::Any, ext: &mut Extensions) {
    use actix_tls::accept::rustls_0_23::TlsStream;
    if let Some(tls) = conn.downcast_ref::<TlsStream<actix_web::rt::net::TcpStream>>()
        && let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first())
    {
        ext.insert(PeerCertificate(cert.to_vec()));
    }
}

fn principal(req: &HttpRequest, svc: &Service) -> Result<Principal, ApiError> {
    let named = req
        .conn_data::<PeerCertificate>()
        .and_then(|c| Principal::of_certificate(&c.0));
    Ok(svc.authenticate(named)?)
}

fn b64(field: &'static str, text: &str) -> Result<Vec<u8>, ApiError> {
    B64.decode(text)
        .map_err(|e| ApiError::bad_request("bad_base64", format!("{field}: not base64: {e}")))
}

fn fixed<const N: usize>(field: &'static str, bytes: &[u8]) -> Result<[u8; N], ApiError> {
    bytes.try_into().map_err(|_| {
        ApiError::bad_request(
            "bad_length",
            format!("{field}: expected {N} bytes, got {}", bytes.len()),
        )
    })
}

/// Routes.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_BODY)
            .error_handler(|e, _| ApiError::from_json(&e).into()),
    )
    .app_data(
        web::QueryConfig::default()
            .error_handler(|e, _| ApiError::bad_request("bad_query", e.to_string()).into()),
    )
    .app_data(web::PayloadConfig::default().limit(MAX_BODY))
    .route("/healthz", web::get().to(healthz))
    .route("/readyz", web::get().to(healthz))
    .route("/metrics", web::get().to(prometheus))
    .service(
        web::scope("/v1")
            .route("/ca", web::get().to(ca))
            .route("/chain", web::get().to(chain))
            .route("/enroll", web::post().to(enroll))
            .route("/sign", web::post().to(sign))
            .route("/verify", web::post().to(verify))
            .route("/encrypt", web::post().to(encrypt))
            .route("/decrypt", web::post().to(decrypt))
            .route("/seal", web::post().to(seal))
            .route("/unseal", web::post().to(unseal))
            .route("/rewrap", web::post().to(rewrap))
            .route("/batch/sign", web::post().to(batch_sign))
            .route("/batch/verify", web::post().to(batch_verify))
            .route("/datakey", web::post().to(datakey))
            .route("/rekey", web::post().to(rekey_self))
            .route("/nodes/{name}/rekey", web::post().to(rekey_node))
            .route("/nodes", web::post().to(add_node))
            .route("/nodes", web::get().to(list_nodes))
            .route("/nodes/{name}/revoke", web::post().to(revoke)),
    )
    .default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::not_found())
    }));
}

impl ApiError {
    fn from_json(e: &actix_web::error::JsonPayloadError) -> Self {
        use actix_web::error::JsonPayloadError as J;
        match e {
            J::OverflowKnownLength { .. } | J::Overflow { .. } => ApiError::with_status(
                actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body exceeds {MAX_BODY} bytes"),
            ),
            J::ContentType => ApiError::with_status(
                actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send Content-Type: application/json",
            ),
            other => ApiError::bad_request("bad_json", other.to_string()),
        }
    }

    fn not_found() -> Self {
        ApiError::from(crate::service::ServiceError::NotFound(
            "no such endpoint".into(),
        ))
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn prometheus() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics().render())
}

async fn ca(svc: web::Data<Service>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/x-pem-file")
        .body(svc.ca().cert_pem().to_owned())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainQuery {
    #[serde(default)]
    since: u64,
}

async fn chain(
    svc: web::Data<Service>,
    q: web::Query<ChainQuery>,
) -> Result<HttpResponse, ApiError> {
    let bytes = svc.chain_since(q.since)?;
    Ok(HttpResponse::Ok()
        .content_type("application/cbor")
        .body(bytes))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollRequest {
    token: String,
    csr: String,
}

async fn enroll(
    svc: web::Data<Service>,
    body: web::Json<EnrollRequest>,
) -> Result<HttpResponse, ApiError> {
    let (certificate, path) = svc.enroll(&body.token, &body.csr)?;
    Ok(HttpResponse::Ok().json(json!({
        "certificate": certificate,
        "ca": svc.ca().cert_pem(),
        "path": path.to_string(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignRequest {
    data: String,
}

async fn sign(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Json<SignRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let data = b64("data", &body.data)?;
    let (signature, key_id, epoch, path) = svc.sign(&who, &data)?;
    Ok(HttpResponse::Ok().json(json!({
        "signature": B64.encode(signature.to_bytes()),
        "key_id": key_id,
        "epoch": epoch,
        "path": path.to_string(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyRequest {
    data: String,
    signature: String,
    public_key: String,
}

/// A verify request decoded: data, signature, public key.
type VerifyParts = (Vec<u8>, [u8; 64], [u8; 32]);

impl VerifyRequest {
    /// The data, the 64-byte signature and the 32-byte public key.
    fn parse(&self) -> Result<VerifyParts, ApiError> {
        let data = b64("data", &self.data)?;
        let signature = fixed("signature", &b64("signature", &self.signature)?)?;
        let public = hex::decode(self.public_key.trim())
            .map_err(|e| ApiError::bad_request("bad_hex", format!("public_key: not hex: {e}")))?;
        Ok((data, signature, fixed("public_key", &public)?))
    }
}

async fn verify(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Json<VerifyRequest>,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &svc)?;
    let (data, signature, public) = body.parse()?;
    Ok(HttpResponse::Ok().json(svc.verify(&data, &signature, &public)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddNode {
    name: String,
    parent: Option<String>,
}

async fn add_node(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Json<AddNode>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (path, token, expires_at) = svc.add_node(&who, &body.name, body.parent.as_deref())?;
    Ok(HttpResponse::Created().json(json!({
        "name": body.name,
        "path": path.to_string(),
        "token": token.as_str(),
        "expires_at": expires_at,
    })))
}

async fn list_nodes(req: HttpRequest, svc: web::Data<Service>) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let nodes: Vec<_> = svc
        .list_nodes(&who)?
        .into_iter()
        .map(|(name, path, status)| json!({"name": name, "path": path, "status": status}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"nodes": nodes})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    reason: String,
}

async fn revoke(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
    body: web::Json<RevokeRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let cut = svc.revoke(&who, &name, &body.reason)?;
    Ok(HttpResponse::Ok()
        .json(json!({"revoked": cut.iter().map(|p| p.to_string()).collect::<Vec<_>>()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EncryptRequest {
    to: String,
    plaintext: String,
}

async fn encrypt(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Json<EncryptRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let plaintext = b64("plaintext", &body.plaintext)?;
    let (envelope, recipient) = svc.encrypt(&who, &body.to, &plaintext)?;
    Ok(HttpResponse::Ok()
        .json(json!({"envelope": B64.encode(envelope), "recipient": recipient.to_string()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeRequest {
    envelope: String,
}

async fn decrypt(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Json<EnvelopeRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let envelope = b64("envelope", &body.envelope)?;
    let (plaintext, sender) = svc.decrypt(&who, &envelope)?;
    Ok(HttpResponse::Ok()
        .json(json!({"plaintext": B64.encode(plaintext.as_slice()), "sender": sender.to_string()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SealRequest {
    plaintext: String,
}

async fn seal(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Json<SealRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let plaintext = b64("plaintext", &body.plaintext)?;
    Ok(HttpResponse::Ok().json(json!({"envelope": B64.encode(svc.seal(&who, &plaintext)?)})))
}

async fn unseal(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Json<EnvelopeRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let envelope = b64("envelope", &body.envelope)?;
    let plaintext = svc.unseal(&who, &envelope)?;
    Ok(HttpResponse::Ok().json(json!({"plaintext": B64.encode(plaintext.as_slice())})))
}

async fn rewrap(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Json<EnvelopeRequest>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let envelope = b64("envelope", &body.envelope)?;
    Ok(HttpResponse::Ok().json(json!({"envelope": B64.encode(svc.rewrap(&who, &envelope)?)})))
}

async fn datakey(req: HttpRequest, svc: web::Data<Service>) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let (key, sealed) = svc.datakey(&who)?;
    Ok(HttpResponse::Ok()
        .json(json!({"key": B64.encode(key.as_ref()), "envelope": B64.encode(sealed)})))
}

async fn rekey_self(req: HttpRequest, svc: web::Data<Service>) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let key = svc.rekey(&who, None)?;
    Ok(HttpResponse::Ok().json(json!({"key": key.to_string()})))
}

async fn rekey_node(
    req: HttpRequest,
    svc: web::Data<Service>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let key = svc.rekey(&who, Some(&name))?;
    Ok(HttpResponse::Ok().json(json!({"key": key.to_string()})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch<T> {
    items: Vec<T>,
}

fn check_batch<T>(b: &Batch<T>) -> Result<(), ApiError> {
    if b.items.is_empty() || b.items.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "bad_batch",
            format!("items: {} given, 1 to {MAX_BATCH} allowed", b.items.len()),
        ));
    }
    Ok(())
}

async fn batch_sign(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Json<Batch<SignRequest>>,
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    check_batch(&body)?;
    let data = body
        .items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            B64.decode(&item.data).map_err(|e| {
                ApiError::bad_request("bad_base64", format!("items[{i}].data: not base64: {e}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (signatures, key_id, epoch, path) = svc.sign_batch(&who, &data)?;
    let results: Vec<_> = signatures
        .iter()
        .map(|s| json!({"signature": B64.encode(s.to_bytes())}))
        .collect();
    Ok(HttpResponse::Ok().json(
        json!({"key_id": key_id, "epoch": epoch, "path": path.to_string(), "results": results}),
    ))
}

async fn batch_verify(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: web::Json<Batch<VerifyRequest>>,
) -> Result<HttpResponse, ApiError> {
    principal(&req, &svc)?;
    check_batch(&body)?;
    let mut results = Vec::with_capacity(body.items.len());
    for item in &body.items {
        let (data, signature, public) = item.parse()?;
        results.push(svc.verify(&data, &signature, &public));
    }
    Ok(HttpResponse::Ok().json(json!({"results": results})))
}
