//! The client side of keyd's transit facade (`/v1/transit/`): a node's named keys, for
//! `keyctl key create|list|show|rotate`. Answers come in transit's envelope; errors in
//! transit's `{"errors": [...]}`, which this maps to [`ClientError::Api`] (code `transit`).

use serde_json::Value;
use zeroize::Zeroizing;

use super::{Client, ClientError, segment};

impl Client {
    /// A transit request: `method` on `/v1/transit/{path}` with a JSON body; the
    /// answer's `data` (`null` for 204 and for transit's empty 404).
    pub fn transit(&self, method: &str, path: &str, body: &Value) -> Result<Value, ClientError> {
        let full = format!("/v1/transit/{path}");
        let bytes =
            serde_json::to_vec(body).map_err(|e| ClientError::Http(format!("{full}: {e}")))?;
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{full}", self.url))
            .header("content-type", "application/json")
            .body(bytes)
            .map_err(|e| ClientError::Http(format!("{full}: {e}")))?;
        let mut resp = self.agent.run(req).map_err(self.unreachable(&full))?;
        let status = resp.status().as_u16();
        let text = Zeroizing::new(
            resp.body_mut()
                .read_to_string()
                .map_err(|e| ClientError::Http(format!("{full}: {e}")))?,
        );
        let v: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|_| {
                ClientError::Http(format!(
                    "{full}: {status} with a body that is not transit's"
                ))
            })?
        };
        if !(200..300).contains(&status) {
            let errors: Vec<&str> = v["errors"]
                .as_array()
                .map(|e| e.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            return Err(ClientError::Api {
                status,
                code: "transit".into(),
                message: if errors.is_empty() {
                    format!("nothing at {full}")
                } else {
                    errors.join("; ")
                },
            });
        }
        Ok(v["data"].clone())
    }

    /// A transit request on the named key `name`: `{op}/{name}{suffix}` (`op` e.g.
    /// `keys`, `suffix` e.g. `/rotate` or empty).
    pub fn transit_on(
        &self,
        method: &str,
        (op, name, suffix): (&str, &str, &str),
        body: &Value,
    ) -> Result<Value, ClientError> {
        self.transit(method, &format!("{op}/{}{suffix}", segment(name)), body)
    }
}
