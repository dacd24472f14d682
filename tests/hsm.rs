//! The keyd library's PKCS#11 adapter against a real SoftHSM2 token.

use anyhow::{Context, Result, ensure};
use keyd::derive::{KeyPath, SoftwareRoot, derive_node};
use keyd::hsm::{Hsm, HsmError, Pkcs11Uri};
use serde_json::Value;

use crate::helpers::{in_token_process, parent_token};

fn vectors() -> Result<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/test-vectors.json"
    ))?;
    Ok(serde_json::from_str(&text)?)
}

/// The PKCS#11 root gives exactly the software root's outputs, for every published
/// vector: each vector root is imported into the token and every path derived through
/// `C_Sign(CKM_SHA512_HMAC)`.
#[test]
fn pkcs11_root_matches_software_root_vectors() -> Result<()> {
    let token = parent_token("vectors")?;
    in_token_process(
        "hsm::pkcs11_root_matches_software_root_vectors",
        token.as_ref(),
        |uri| {
            let doc = vectors()?;
            let mut checked = 0;
            for (i, root) in doc["keyd"]["roots"]
                .as_array()
                .context("roots")?
                .iter()
                .enumerate()
            {
                // One root object per vector root, under its own label.
                let mut uri: Pkcs11Uri = uri.parse()?;
                uri.object = Some(format!("vector-root-{i}"));
                let hsm = Hsm::open(&uri)?;
                let secret = hex::decode(root["root_hex"].as_str().context("root_hex")?)?;
                hsm.import_root(&secret)?;
                let through_hsm = hsm.root()?;
                let software = SoftwareRoot::danger_from_bytes(&secret);
                for key in root["keys"].as_array().context("keys")? {
                    let path: KeyPath = key["path"].as_str().context("path")?.parse()?;
                    let a = derive_node(&through_hsm, &path)?;
                    let b = derive_node(&software, &path)?;
                    ensure!(a.danger_key() == b.danger_key(), "k differs at {path}");
                    ensure!(
                        a.danger_chain_code() == b.danger_chain_code(),
                        "c differs at {path}"
                    );
                    let public = a.public_keys();
                    ensure!(
                        public.key_id.to_string() == key["key_id"].as_str().context("key_id")?,
                        "key id differs from the published vector at {path}"
                    );
                    checked += 1;
                }
                // A root is never overwritten.
                ensure!(matches!(
                    hsm.import_root(&secret),
                    Err(HsmError::RootExists { .. })
                ));
            }
            ensure!(checked == 18, "checked {checked} vectors");
            Ok(())
        },
    )
}

/// The HSM layer's refusals, each with an error that names the problem.
#[test]
fn hsm_errors_name_the_problem() -> Result<()> {
    let token = parent_token("errors")?;
    in_token_process("hsm::hsm_errors_name_the_problem", token.as_ref(), |uri| {
        let good: Pkcs11Uri = uri.parse()?;
        let pin_file = match &good.pin_source {
            Some(keyd::hsm::PinSource::File(p)) => p.clone(),
            other => anyhow::bail!("unexpected pin source {other:?}"),
        };
        let dir = pin_file.parent().context("pin dir")?.to_owned();

        // Wrong PIN.
        let wrong = dir.join("wrong.pin");
        hsm_sim::write_secret_file(&wrong, "not-the-pin")?;
        let mut uri = good.clone();
        uri.pin_source = Some(keyd::hsm::PinSource::File(wrong));
        let err = Hsm::open(&uri).unwrap_err();
        ensure!(matches!(err, HsmError::WrongPin { .. }), "{err}");
        ensure!(err.to_string().contains("incorrect"), "{err}");

        // A PIN file others can read.
        let loose = dir.join("loose.pin");
        std::fs::write(&loose, "x\n")?;
        let mut uri = good.clone();
        uri.pin_source = Some(keyd::hsm::PinSource::File(loose));
        let err = Hsm::open(&uri).unwrap_err();
        ensure!(matches!(err, HsmError::PinFileMode { .. }), "{err}");

        // PIN from an unset variable.
        let mut uri = good.clone();
        uri.pin_source = Some(keyd::hsm::PinSource::Env("KEYD_TEST_UNSET_PIN_VAR".into()));
        let err = Hsm::open(&uri).unwrap_err();
        ensure!(matches!(err, HsmError::PinEnv { .. }), "{err}");

        // Unknown token label: the error lists the tokens present.
        let mut uri = good.clone();
        uri.token = "no-such-token".into();
        let err = Hsm::open(&uri).unwrap_err();
        ensure!(matches!(err, HsmError::TokenNotFound { .. }), "{err}");
        ensure!(
            err.to_string().contains("errors"),
            "lists the present token: {err}"
        );

        // Missing module.
        let mut uri = good.clone();
        uri.module_path = "/nonexistent/libpkcs11.so".into();
        let err = Hsm::open(&uri).unwrap_err();
        ensure!(
            err.to_string().contains("apt-get install softhsm2"),
            "{err}"
        );

        // No root yet; a wrong-length root is refused and nothing is created.
        let hsm = Hsm::open(&good)?;
        ensure!(matches!(hsm.root(), Err(HsmError::RootMissing { .. })));
        ensure!(matches!(
            hsm.import_root(&[1u8; 32]),
            Err(HsmError::BadLength { .. })
        ));
        ensure!(!hsm.has_root()?);
        Ok(())
    })
}

/// A root object with any attribute that could let the secret out, or be misused, is
/// refused on open, naming the attribute; the root keyd imports itself opens.
#[test]
fn a_root_object_with_a_wrong_attribute_is_refused() -> Result<()> {
    use hsm_sim::RootFlaw;
    let token = parent_token("flawed")?;
    in_token_process(
        "hsm::a_root_object_with_a_wrong_attribute_is_refused",
        token.as_ref(),
        |uri| {
            let conf = std::env::var("SOFTHSM2_CONF")?;
            let dir = std::path::Path::new(&conf)
                .parent()
                .context("SOFTHSM2_CONF has a directory")?;
            let layout = hsm_sim::Layout::of(dir)?;
            let module = hsm_sim::find_module()?;
            let base: Pkcs11Uri = uri.parse()?;
            for (i, (flaw, attribute)) in [
                (RootFlaw::Extractable, "CKA_EXTRACTABLE"),
                (RootFlaw::NotSensitive, "CKA_SENSITIVE"),
                (RootFlaw::Modifiable, "CKA_MODIFIABLE"),
                (RootFlaw::Derive, "CKA_DERIVE"),
                (RootFlaw::Encrypt, "CKA_ENCRYPT"),
                (RootFlaw::MoreMechanisms, "CKA_ALLOWED_MECHANISMS"),
                (RootFlaw::WrongKeyType, "CKA_KEY_TYPE"),
            ]
            .into_iter()
            .enumerate()
            {
                let object = format!("flawed-{i}");
                hsm_sim::plant_root_in_process(&layout, &module, &base.token, &object, flaw)?;
                let mut uri = base.clone();
                uri.object = Some(object);
                let hsm = Hsm::open(&uri)?;
                let err = hsm.root().err().context("a flawed root must be refused")?;
                ensure!(
                    matches!(&err, HsmError::RootAttribute { attribute: a, .. } if *a == attribute),
                    "{flaw:?}: {err}"
                );
                ensure!(err.to_string().contains(attribute), "{err}");
            }
            let mut uri = base.clone();
            uri.object = Some("good".into());
            let hsm = Hsm::open(&uri)?;
            hsm.import_root(&[9u8; 64])?;
            hsm.root()?;
            Ok(())
        },
    )
}
