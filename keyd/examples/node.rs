//! A node of a keyd cluster, in Rust, with the library's typed client: it enrolls once
//! with a one-time token, renews its certificate before it expires, signs (and checks
//! the signature against the cluster), and encrypts to itself and decrypts.
//!
//! ```text
//! keyctl node add web1 --token-out web1.token        # an admin, once
//! cargo run --example node -- web1 ./web1 --enroll https://127.0.0.1:8443 ca.pem web1.token
//! cargo run --example node -- web1 ./web1            # later runs: the saved credential
//! ```
//!
//! `--renew-now` renews even when the certificate has time left (as a test does). A
//! long-running node would call [`renewal_due`] now and then, say hourly.

use std::error::Error;
use std::path::{Path, PathBuf};

use keyd::client::Client;
use keyd::client::enroll::{certificate_validity, enroll, renew, renewal_due};

fn main() {
    if let Err(e) = run() {
        eprintln!("node: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (name, dir) = match (args.first(), args.get(1)) {
        (Some(name), Some(dir)) => (name.as_str(), PathBuf::from(dir)),
        _ => {
            return Err(
                "usage: node NAME DIR [--enroll URL CA_PEM TOKEN_FILE] [--renew-now]".into(),
            );
        }
    };
    let config = dir.join("keyctl.toml");

    // 1. Enroll once: the token is spent, DIR gets the credential, keyd's CA and the
    //    chain (verified, and holding this node valid) and keyctl.toml naming them.
    if let Some(at) = args.iter().position(|a| a == "--enroll") {
        let [url, ca, token_file] = [1, 2, 3].map(|i| args.get(at + i).cloned());
        let (Some(url), Some(ca), Some(token_file)) = (url, ca, token_file) else {
            return Err("--enroll takes URL CA_PEM TOKEN_FILE".into());
        };
        let token = zeroize::Zeroizing::new(std::fs::read_to_string(&token_file)?);
        let enrolled = enroll(&url, Path::new(&ca), token.trim())?;
        enrolled.save(&dir)?;
        println!(
            "enrolled as {} ({} chain entries verified)",
            enrolled.path,
            enrolled.chain.len()
        );
    }

    // 2. Renew before expiry: when a third of the certificate's lifetime is left.
    let (_, not_after) = certificate_validity(&config)?;
    if args.iter().any(|a| a == "--renew-now") || renewal_due(&config, keyd::unix_now())? {
        renew(&config)?;
        let (_, renewed) = certificate_validity(&config)?;
        println!(
            "certificate renewed: valid until {} (was {})",
            keyd::rfc3339(renewed),
            keyd::rfc3339(not_after)
        );
    }

    // 3. Sign, and ask the cluster whether the signature and its key are valid.
    let keyd = Client::from_config(&config)?;
    let message = b"deploy build 1234";
    let signed = keyd.sign(message)?;
    let check = keyd.verify(message, signed.signature.as_slice(), &signed.public_key)?;
    if !check.valid {
        return Err(check.not_valid_reason().into());
    }
    println!("signed with {} (key {}): valid", signed.path, signed.key_id);

    // 4. Encrypt to this node (any node of the cluster, by name or path), bound to a
    //    context the decryption must name again, and decrypt.
    let secret = b"database password";
    let sealed = keyd.encrypt(name, secret, None, b"db/users")?;
    let opened = keyd.decrypt(sealed.envelope.as_slice(), b"db/users")?;
    if opened.plaintext.as_slice() != secret {
        return Err("the decrypted text differs".into());
    }
    println!(
        "decrypted {} bytes ({}) from {}",
        opened.plaintext.as_slice().len(),
        sealed.suite,
        opened.sender
    );
    Ok(())
}
