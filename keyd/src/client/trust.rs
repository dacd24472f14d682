//! Trust between clusters, for an admin's client: invite, accept, consent, confirm,
//! and the trusted clusters (docs/trust-exchange.md).

use super::{Client, ClientError};
use crate::wire::{
    RevokeRequest, TrustAccept, TrustConfirm, TrustConsent, TrustInvite, TrustInvited,
    TrustSessionView, TrustedClusters,
};

impl Client {
    /// Opens a trust session: its invitation link.
    pub fn trust_invite(&self, ask: &TrustInvite) -> Result<TrustInvited, ClientError> {
        self.post("/v1/trust/invite", ask)
    }

    /// Answers an invitation: the inviter's persona, for the admin to consent to.
    pub fn trust_accept(&self, token: &str) -> Result<TrustSessionView, ClientError> {
        self.post(
            "/v1/trust/accept",
            &TrustAccept {
                token: token.to_owned(),
            },
        )
    }

    /// Where a session stands.
    pub fn trust_session(&self, session: &str) -> Result<TrustSessionView, ClientError> {
        self.get(&format!("/v1/trust/sessions/{session}"))
    }

    /// The responder's consent: what it grants.
    pub fn trust_consent(
        &self,
        session: &str,
        ask: &TrustConsent,
    ) -> Result<TrustSessionView, ClientError> {
        self.post(&format!("/v1/trust/sessions/{session}/consent"), ask)
    }

    /// Confirms the code: the inviter's last digit, or the responder's yes or no.
    pub fn trust_confirm(
        &self,
        session: &str,
        ask: &TrustConfirm,
    ) -> Result<TrustSessionView, ClientError> {
        self.post(&format!("/v1/trust/sessions/{session}/confirm"), ask)
    }

    /// The clusters trusted now.
    pub fn trusted_clusters(&self) -> Result<TrustedClusters, ClientError> {
        self.get("/v1/trust/clusters")
    }

    /// Ends the trust in the cluster of root `root` (fingerprint) and blocklists it.
    pub fn trust_revoke(&self, root: &str, reason: &str) -> Result<TrustedClusters, ClientError> {
        self.post(
            &format!("/v1/trust/clusters/{root}/revoke"),
            &RevokeRequest {
                reason: reason.to_owned(),
            },
        )
    }

    /// Runs the exchange again with a trusted cluster over the keys recorded.
    pub fn trust_reset(&self, root: &str) -> Result<TrustSessionView, ClientError> {
        self.post(
            &format!("/v1/trust/clusters/{root}/reset"),
            &crate::wire::Empty {},
        )
    }

    /// Asks the trusted cluster `via` to introduce this cluster to `ask.to`.
    pub fn trust_introduce(
        &self,
        via: &str,
        ask: &crate::wire::TrustIntroduce,
    ) -> Result<TrustSessionView, ClientError> {
        self.post(&format!("/v1/trust/clusters/{via}/introduce"), ask)
    }

    /// Pulls every trusted cluster's chain now.
    pub fn trust_sync(&self) -> Result<crate::wire::TrustSynced, ClientError> {
        self.post("/v1/trust/sync", &crate::wire::Empty {})
    }
}
