//! Node operations, each with a single and a batch form (`/v1/OP` and `/v1/batch/OP`).
//!
//! An operation is one function from a decoded request to a response; the single form
//! answers with it or with an error, the batch form answers every item, each with its
//! result or its own error, so one bad item does not sink the others.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use super::body::{Body, Bytes, Format};
use super::error::ErrorBody;
use super::{ApiError, MAX_BATCH, metrics, principal};
use crate::envelope::Suite;
use crate::identity::Principal;
use crate::service::Service;
use zeroize::Zeroizing;

use crate::wire::{
    Batch, BatchResults, Blob, DatakeyRequest, DatakeyResponse, DecryptResponse, EncryptRequest,
    EncryptResponse, EnvelopeRequest, EnvelopeResponse, Item, PlaintextResponse, SealRequest,
    SignRequest, SignResponse, Verification, VerifyRequest,
};

/// An operation: the service, the caller, the request, and the prefix naming the item in
/// errors (`""` or `"items[3]."`).
type Op<Req, Resp> = fn(&Service, &Principal, Req, &str) -> Result<Resp, ApiError>;

async fn single<Req, Resp: Serialize>(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<Req>,
    (name, op): (&'static str, Op<Req, Resp>),
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let resp = op(&svc, &who, body.0, "");
    let ok = u64::from(resp.is_ok());
    metrics().operations(name, ok, 1 - ok);
    Format::wanted(&req).reply(StatusCode::OK, &resp?)
}

async fn batch<Req: Send + 'static, Resp: Serialize + Send + 'static>(
    req: HttpRequest,
    svc: web::Data<Service>,
    body: Body<Batch<Req>>,
    (name, op): (&'static str, Op<Req, Resp>),
) -> Result<HttpResponse, ApiError> {
    let who = principal(&req, &svc)?;
    let items = body.0.items;
    if items.is_empty() || items.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "bad_batch",
            format!("items: {} given, 1 to {MAX_BATCH} allowed", items.len()),
        ));
    }
    // Up to 1,000 public-key operations: off the async workers.
    // Each item is decided by the policy as an item of a batch of this size.
    let results: Vec<Item<Resp>> = web::block(move || {
        crate::service::policy::in_batch(items.len(), || {
            items
                .into_iter()
                .enumerate()
                .map(
                    |(i, item)| match op(&svc, &who, item, &format!("items[{i}].")) {
                        Ok(r) => Item::Ok(r),
                        Err(e) => Item::Err(e.counted_body()),
                    },
                )
                .collect()
        })
    })
    .await
    .map_err(|_| ApiError::internal())?;
    let ok = results.iter().filter(|r| matches!(r, Item::Ok(_))).count() as u64;
    metrics().operations(name, ok, results.len() as u64 - ok);
    Format::wanted(&req).reply(StatusCode::OK, &BatchResults { results })
}

/// Declares the single and batch handlers of an operation, with their OpenAPI entries.
macro_rules! operation {
    ($single:ident, $batch:ident, $op:ident, $req:ident, $resp:ident, $path:tt, $bpath:tt, $doc:tt) => {
        #[doc = $doc]
        #[utoipa::path(post, path = $path, tag = "node operations", description = $doc,
                    request_body(content = $req),
                    responses((status = 200, body = $resp),
                        (status = "4XX", body = ErrorBody, description = "a stable error code")))]
        pub async fn $single(
            req: HttpRequest,
            svc: web::Data<Service>,
            body: Body<$req>,
        ) -> Result<HttpResponse, ApiError> {
            single(req, svc, body, (stringify!($single), $op)).await
        }

        #[doc = "Batch form (1 to 1,000 items, each answered on its own)."]
        #[utoipa::path(post, path = $bpath, tag = "batch", description = $doc,
                    request_body(content = inline(Batch<$req>)),
                    responses((status = 200, body = inline(BatchResults<$resp>)),
                        (status = "4XX", body = ErrorBody, description = "a stable error code")))]
        pub async fn $batch(
            req: HttpRequest,
            svc: web::Data<Service>,
            body: Body<Batch<$req>>,
        ) -> Result<HttpResponse, ApiError> {
            batch(req, svc, body, (stringify!($single), $op)).await
        }
    };
}

operation!(
    sign,
    batch_sign,
    op_sign,
    SignRequest,
    SignResponse,
    "/v1/sign",
    "/v1/batch/sign",
    "Signs data with the caller's current epoch key (Ed25519)."
);
operation!(
    verify,
    batch_verify,
    op_verify,
    VerifyRequest,
    Verification,
    "/v1/verify",
    "/v1/batch/verify",
    "Verifies a signature and says whether its key is a valid key of this cluster, and why not."
);
operation!(
    encrypt,
    batch_encrypt,
    op_encrypt,
    EncryptRequest,
    EncryptResponse,
    "/v1/encrypt",
    "/v1/batch/encrypt",
    "Encrypts to a node's current epoch key with HPKE (X-Wing by default), signed by the caller."
);
operation!(
    decrypt,
    batch_decrypt,
    op_decrypt,
    EnvelopeRequest,
    DecryptResponse,
    "/v1/decrypt",
    "/v1/batch/decrypt",
    "Decrypts an envelope addressed to the caller after checking its sender against the chain."
);
operation!(
    seal,
    batch_seal,
    op_seal,
    SealRequest,
    EnvelopeResponse,
    "/v1/seal",
    "/v1/batch/seal",
    "Seals data for the caller's own storage under its current epoch."
);
operation!(
    unseal,
    batch_unseal,
    op_unseal,
    EnvelopeRequest,
    PlaintextResponse,
    "/v1/unseal",
    "/v1/batch/unseal",
    "Opens an envelope sealed by the caller (any epoch not revoked)."
);
operation!(
    rewrap,
    batch_rewrap,
    op_rewrap,
    EnvelopeRequest,
    EnvelopeResponse,
    "/v1/rewrap",
    "/v1/batch/rewrap",
    "Re-seals an envelope of an older epoch under the current one."
);
operation!(
    datakey,
    batch_datakey,
    op_datakey,
    DatakeyRequest,
    DatakeyResponse,
    "/v1/datakey",
    "/v1/batch/datakey",
    "A fresh 256-bit data key and its sealed form."
);

fn op_sign(
    svc: &Service,
    who: &Principal,
    r: SignRequest,
    at: &str,
) -> Result<SignResponse, ApiError> {
    let data = r.data.bytes(&format!("{at}data"))?;
    let signed = svc.sign(who, &data)?;
    Ok(SignResponse {
        signature: Bytes::new(signed.signature.to_bytes()),
        key_id: signed.key_id,
        epoch: signed.epoch,
        path: signed.path.to_string(),
        public_key: hex::encode(signed.public_key),
    })
}

fn fixed<const N: usize>(field: &str, bytes: &[u8]) -> Result<[u8; N], ApiError> {
    bytes.try_into().map_err(|_| {
        ApiError::bad_request(
            "bad_length",
            format!("{field}: expected {N} bytes, got {}", bytes.len()),
        )
    })
}

fn op_verify(
    svc: &Service,
    who: &Principal,
    r: VerifyRequest,
    at: &str,
) -> Result<Verification, ApiError> {
    let data = r.data.bytes(&format!("{at}data"))?;
    let field = format!("{at}signature");
    let signature = fixed(&field, &r.signature.bytes(&field)?)?;
    let field = format!("{at}public_key");
    let public = hex::decode(r.public_key.trim())
        .map_err(|e| ApiError::bad_request("bad_hex", format!("{field}: not hex: {e}")))?;
    Ok(svc.verify(who, &data, &signature, &fixed(&field, &public)?)?)
}

/// A request's context bytes (empty when it has none).
fn context(blob: Option<&Blob>, at: &str) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    match blob {
        Some(b) => Ok(b.bytes(&format!("{at}context"))?),
        None => Ok(Zeroizing::new(Vec::new())),
    }
}

fn op_encrypt(
    svc: &Service,
    who: &Principal,
    r: EncryptRequest,
    at: &str,
) -> Result<EncryptResponse, ApiError> {
    let suite = match r.suite.as_deref() {
        None => Suite::default(),
        Some(s) => Suite::parse(s).map_err(|e| {
            ApiError::bad_request("bad_suite", format!("{at}suite: {e}; use x-wing or x25519"))
        })?,
    };
    let plaintext = r.plaintext.bytes(&format!("{at}plaintext"))?;
    let ctx = context(r.context.as_ref(), at)?;
    let (envelope, recipient) = svc.encrypt(who, &r.to, suite, &plaintext, &ctx)?;
    Ok(EncryptResponse {
        envelope: Bytes::new(envelope),
        recipient: recipient.to_string(),
        suite: suite.name().to_owned(),
    })
}

fn op_decrypt(
    svc: &Service,
    who: &Principal,
    r: EnvelopeRequest,
    at: &str,
) -> Result<DecryptResponse, ApiError> {
    let envelope = r.envelope.bytes(&format!("{at}envelope"))?;
    let ctx = context(r.context.as_ref(), at)?;
    let (plaintext, sender) = svc.decrypt(who, &envelope, &ctx)?;
    Ok(DecryptResponse {
        plaintext: Bytes(plaintext),
        sender: sender.to_string(),
    })
}

fn op_seal(
    svc: &Service,
    who: &Principal,
    r: SealRequest,
    at: &str,
) -> Result<EnvelopeResponse, ApiError> {
    let plaintext = r.plaintext.bytes(&format!("{at}plaintext"))?;
    Ok(EnvelopeResponse {
        envelope: Bytes::new(svc.seal(who, &plaintext, &context(r.context.as_ref(), at)?)?),
    })
}

fn op_unseal(
    svc: &Service,
    who: &Principal,
    r: EnvelopeRequest,
    at: &str,
) -> Result<PlaintextResponse, ApiError> {
    let envelope = r.envelope.bytes(&format!("{at}envelope"))?;
    Ok(PlaintextResponse {
        plaintext: Bytes(svc.unseal(who, &envelope, &context(r.context.as_ref(), at)?)?),
    })
}

fn op_rewrap(
    svc: &Service,
    who: &Principal,
    r: EnvelopeRequest,
    at: &str,
) -> Result<EnvelopeResponse, ApiError> {
    let envelope = r.envelope.bytes(&format!("{at}envelope"))?;
    Ok(EnvelopeResponse {
        envelope: Bytes::new(svc.rewrap(who, &envelope, &context(r.context.as_ref(), at)?)?),
    })
}

fn op_datakey(
    svc: &Service,
    who: &Principal,
    r: DatakeyRequest,
    at: &str,
) -> Result<DatakeyResponse, ApiError> {
    let (key, sealed) = svc.datakey(who, &context(r.context.as_ref(), at)?)?;
    Ok(DatakeyResponse {
        key: Bytes::new(key.as_slice()),
        envelope: Bytes::new(sealed),
    })
}
