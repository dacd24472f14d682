//! The trust exchange as a state machine: two honest sides agree on a code and each
//! learns the other's verified persona; a man in the middle who substitutes his own
//! keys on both sides ends with two different codes in every one of 200 runs, and
//! cannot pass the inviter's identity on (its signature binds the transcript it saw);
//! a tampered reveal, a wrong digit, a refusal and messages out of order end the
//! session.

mod common;

use common::{NOW, Tree, p};
use keyd::chain::TrustLevel;
use keyd::trust::{Inviter, Persona, ProtocolError, Responder};
use rand_core::UnwrapErr;

fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

/// A cluster of its own (tree `seed`) and the persona of its keyd for branch m/1'.
fn cluster(seed: u8, name: &str) -> (Tree, Persona) {
    let tree = Tree::new(seed);
    let mut chain = tree.root_and_branch();
    tree.close(&mut chain, NOW);
    let persona = Persona {
        persona: name.into(),
        cluster: "test".into(),
        root: tree.keyset(&keyd::derive::KeyPath::root()).ed25519,
        branch: p("m/1'"),
        url: format!("https://{name}.example:8443"),
        ca_pem: String::new(),
        level: TrustLevel::Limited,
        permissions: vec!["verify".into()],
        expires_at: NOW + 86_400,
        chain: chain.to_file(),
    };
    (tree, persona)
}

/// An honest exchange up to the inviter's identity (`pa`, signed by tree `ta`'s branch
/// key): both sides and that identity, sealed.
fn up_to_identity(ta: &Tree, pa: Persona) -> (Inviter, Responder, keyd::trust::Sealed) {
    let mut r = rng();
    let (mut a, offer) = Inviter::new(&mut r);
    let (mut b, join) = Responder::new(&offer, &mut r);
    let reveal = a.on_join(&join, &mut r).expect("reveal");
    let finish = b.on_reveal(&reveal, &mut r).expect("finish");
    let a_id = a
        .on_finish(&finish, pa, &ta.signing_key(&p("m/1'")))
        .expect("a's identity");
    (a, b, a_id)
}

#[test]
fn two_honest_sides_agree_on_the_code_and_on_each_other() {
    let (ta, pa) = cluster(1, "alpha");
    let (tb, pb) = cluster(2, "beta");
    let (mut a, mut b, a_id) = up_to_identity(&ta, pa.clone());
    let seen_by_b = b.on_identity(&a_id, NOW).expect("b sees a");
    assert_eq!(seen_by_b.persona, pa);
    let b_id = b
        .consent(&pb, &tb.signing_key(&p("m/1'")))
        .expect("consent");
    let seen_by_a = a.on_identity(&b_id, NOW).expect("a sees b");
    assert_eq!(seen_by_a.persona, pb);
    assert_eq!(seen_by_a.code, seen_by_b.code);
    assert_eq!(a.code(), b.code());
    // A's admin types the last digit, B's admin confirms the match.
    a.confirm_digit(seen_by_a.code.last_digit()).expect("digit");
    let b_yes = b.confirm(true).expect("b confirms");
    assert!(a.on_confirm(&b_yes).expect("a takes it"));
    assert!(a.done());
    let a_yes = a.confirmation().expect("a's confirmation");
    assert!(b.on_confirmation(&a_yes).expect("b takes it"));
}

#[test]
fn a_man_in_the_middle_substituting_his_keys_never_gets_matching_codes() {
    let (ta, pa) = cluster(1, "alpha");
    let (tm, _) = cluster(3, "mallory");
    let mut r = rng();
    for run in 0..200 {
        // Mallory answers Alice's invitation as the responder, and invites Bob
        // himself, relaying between them with his own keys on each side.
        let (mut a, offer_a) = Inviter::new(&mut r);
        let (mut m_as_b, join_m) = Responder::new(&offer_a, &mut r);
        let (mut m_as_a, offer_m) = Inviter::new(&mut r);
        let (mut b, join_b) = Responder::new(&offer_m, &mut r);
        let reveal_a = a.on_join(&join_m, &mut r).expect("alice reveals");
        let finish_m = m_as_b
            .on_reveal(&reveal_a, &mut r)
            .expect("mallory finishes");
        let reveal_m = m_as_a.on_join(&join_b, &mut r).expect("mallory reveals");
        let finish_b = b.on_reveal(&reveal_m, &mut r).expect("bob finishes");
        let code_b = b.code().expect("bob's code");
        let a_id = a
            .on_finish(&finish_m, pa.clone(), &ta.signing_key(&p("m/1'")))
            .expect("alice's identity");
        // Alice's identity, opened by Mallory, cannot be passed on to Bob: Bob's
        // transcript is another one, and Alice's signature is over hers.
        let alice_seen = m_as_b.on_identity(&a_id, NOW).expect("mallory opens it");
        let forged = m_as_a
            .on_finish(
                &finish_b,
                alice_seen.persona.clone(),
                &tm.signing_key(&p("m/1'")),
            )
            .expect("mallory's channel to bob");
        assert_eq!(
            b.on_identity(&forged, NOW).map(|_| ()),
            Err(ProtocolError::Signature),
            "run {run}: bob accepted alice's persona under mallory's signature"
        );
        // So Mallory could only show Bob his own persona; and the codes differ anyway.
        let code_a = a.code().expect("alice's code");
        assert_ne!(code_a, code_b, "run {run}: the codes matched");
    }
}

#[test]
fn a_reveal_that_breaks_the_commitment_is_refused() {
    let mut r = rng();
    let (mut a, offer) = Inviter::new(&mut r);
    let (mut b, join) = Responder::new(&offer, &mut r);
    let mut reveal = a.on_join(&join, &mut r).expect("reveal");
    reveal.nonce[0] ^= 1;
    assert_eq!(
        b.on_reveal(&reveal, &mut r).map(|_| ()),
        Err(ProtocolError::Commitment)
    );
    // The session is over: nothing more is taken.
    assert!(matches!(
        b.on_reveal(&reveal, &mut r),
        Err(ProtocolError::Order(_))
    ));
}

#[test]
fn a_wrong_digit_or_a_refusal_ends_the_session_with_nothing_done() {
    let (ta, pa) = cluster(1, "alpha");
    let (tb, pb) = cluster(2, "beta");
    let mut r = rng();
    let run = |digit_ok: bool, b_agrees: bool| {
        let (mut a, mut b, a_id) = up_to_identity(&ta, pa.clone());
        b.on_identity(&a_id, NOW).expect("b sees a");
        let b_id = b
            .consent(&pb, &tb.signing_key(&p("m/1'")))
            .expect("consent");
        let peer = a.on_identity(&b_id, NOW).expect("a sees b");
        let digit = if digit_ok {
            peer.code.last_digit()
        } else {
            (peer.code.last_digit() + 1) % 10
        };
        let typed = a.confirm_digit(digit);
        let answer = b.confirm(b_agrees).expect("b answers");
        (typed, a.on_confirm(&answer), a.done())
    };
    let (typed, _, done) = run(false, true);
    assert_eq!(typed, Err(ProtocolError::WrongDigit));
    assert!(!done);
    let (typed, confirmed, done) = run(true, false);
    assert!(typed.is_ok());
    assert_eq!(confirmed, Ok(false));
    assert!(!done);
    // Steps out of order are refused.
    let (mut a, _) = Inviter::new(&mut r);
    assert!(matches!(a.confirm_digit(1), Err(ProtocolError::Order(_))));
    assert!(matches!(a.confirmation(), Err(ProtocolError::Order(_))));
}

#[test]
fn a_persona_whose_chain_is_of_another_root_is_refused() {
    let (ta, mut pa) = cluster(1, "alpha");
    let (_, pb) = cluster(2, "beta");
    pa.chain = pb.chain.clone();
    let (_, mut b, a_id) = up_to_identity(&ta, pa);
    assert!(matches!(
        b.on_identity(&a_id, NOW),
        Err(ProtocolError::Persona(m)) if m.contains("another root")
    ));
}
