//! keyd.toml: the example loads, every wrong value is named by its key.

use super::*;

fn load_text(text: &str) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keyd.toml");
    std::fs::write(&path, text).expect("write");
    Config::load(&path)
}

#[test]
fn the_example_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("keyd.example.toml");
    let c = Config::load(&path).expect("example config");
    assert_eq!(c.listen.port(), 8443);
    assert_eq!(c.client_cert_seconds, 24 * 3600);
    assert_eq!(c.seal_hsm.token, "keyd-seal");
}

#[test]
fn the_etcd_table_is_checked_naming_the_key() {
    let base = "listen = \"127.0.0.1:0\"\ndata_dir = \"d\"\nseal_hsm = \"pkcs11:token=s?module-path=/m.so&pin-source=env:P\"\n";
    let good = "[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\nreplica = \"a\"\n";
    let c = load_text(&format!("{base}store = \"etcd\"\n{good}")).expect("etcd");
    let e = c.etcd.expect("etcd settings");
    assert_eq!(e.store.prefix, "/keyd/");
    assert_eq!(e.grace.as_secs(), 60);
    assert!(load_text(base).expect("redb").etcd.is_none());
    let cases = [
        ("store = \"etcd\"\n", "etcd"),
        (good, "store = \"etcd\""),
        ("store = \"zookeeper\"\n", "store"),
        (
            "store = \"etcd\"\n[etcd]\nendpoints = []\nreplica = \"a\"\n",
            "etcd.endpoints",
        ),
        (
            "store = \"etcd\"\n[etcd]\nendpoints = [\"127.0.0.1:2379\"]\nreplica = \"a\"\n",
            "etcd.endpoints",
        ),
        (
            "store = \"etcd\"\n[etcd]\nendpoints = [\"http://h:1\"]\nreplica = \"a b\"\n",
            "etcd.replica",
        ),
        (
            "store = \"etcd\"\n[etcd]\nendpoints = [\"http://h:1\"]\nreplica = \"a\"\nprefix = \"keyd\"\n",
            "etcd.prefix",
        ),
        (
            "store = \"etcd\"\n[etcd]\nendpoints = [\"http://h:1\"]\nreplica = \"a\"\ncert = \"c.pem\"\n",
            "etcd.cert",
        ),
        (
            "store = \"etcd\"\n[etcd]\nendpoints = [\"http://h:1\"]\nreplica = \"a\"\npassword_file = \"/nonexistent/p\"\n",
            "etcd.password_file",
        ),
        (
            "store = \"etcd\"\n[etcd]\nendpoints = [\"http://h:1\"]\nreplica = \"a\"\ntimeout_seconds = 0\n",
            "etcd.timeout_seconds",
        ),
        (
            "store = \"etcd\"\n[etcd]\nendpoints = [\"http://h:1\"]\nreplica = \"a\"\npassword = \"inline\"\n",
            "password",
        ),
    ];
    for (extra, key) in cases {
        let e = load_text(&format!("{base}{extra}"))
            .expect_err(extra)
            .to_string();
        assert!(e.contains(key), "{extra}: {e}");
        assert!(!e.contains("inline"), "a value echoed in an error: {e}");
    }
}

#[test]
fn errors_name_the_key() {
    let base = "listen = \"127.0.0.1:0\"\ndata_dir = \"d\"\nseal_hsm = \"pkcs11:token=s?module-path=/m.so&pin-source=env:P\"\n";
    assert!(load_text(base).is_ok());
    let e = load_text(&format!("{base}bogus = 1\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bogus"), "{e}");
    let e = load_text(&base.replace("127.0.0.1:0", "nope"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("listen"), "{e}");
    let e = load_text(&base.replace("pin-source=env:P", "pin-value=1"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("seal_hsm") && e.contains("pin-value"), "{e}");
    let e = load_text(&format!("{base}log_format = \"xml\"\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("log_format"), "{e}");
    let e = load_text(&format!("{base}client_cert_hours = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("client_cert_hours"), "{e}");
    let e = load_text(&format!(
        "{base}client_cert_hours = 1\nclient_cert_seconds = 5\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("not both"), "{e}");
    let c = load_text(&format!("{base}client_cert_seconds = 5\n")).expect("seconds");
    assert_eq!(c.client_cert_seconds, 5);
    assert_eq!(c.server_names, ["localhost", "127.0.0.1", "::1"]);
    assert!(c.workers >= 1);
    let e = load_text(&format!("{base}workers = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("workers"), "{e}");
    for bad in ["[]", "[\"a b\"]", "[\"-x.example\"]", "[\"x..y\"]"] {
        let e = load_text(&format!("{base}server_names = {bad}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("server_names"), "{bad}: {e}");
    }
    let c = load_text(&format!(
        "{base}server_names = [\"keyd.dc1.internal\", \"10.1.2.3\"]\n"
    ))
    .expect("names");
    assert_eq!(c.server_names, ["keyd.dc1.internal", "10.1.2.3"]);
}
