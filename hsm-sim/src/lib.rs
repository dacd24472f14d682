//! hsm-sim: isolated SoftHSM2 tokens for keyd's tests, demos and CI.
//!
//! A simulation directory holds its own `softhsm2.conf`, token store and PIN files
//! (0600), so nothing touches the system's SoftHSM2 tokens. SoftHSM2 reads
//! `SOFTHSM2_CONF` when a process starts using it, so token initialisation runs in a
//! child process that gets the variable through [`std::process::Command::env`]; the
//! `hsm-sim` binary does this by re-running itself.
//!
//! [`TestToken`] gives a test its own fresh token through the `hsm-sim` binary.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

mod test_token;
pub use test_token::{BIN_ENV, TestToken, binary};

/// Variable naming a PKCS#11 module to use instead of Debian's SoftHSM2.
pub const MODULE_ENV: &str = "TEST_PKCS11_MODULE";
/// Where Debian installs SoftHSM2's module, in the order tried.
pub const MODULE_CANDIDATES: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];
/// The line that marks a configuration as hsm-sim's own (destroy checks it).
const MARKER: &str = "# written by hsm-sim: an isolated SoftHSM2 token for keyd";

/// hsm-sim failures.
#[derive(Debug, Error)]
pub enum SimError {
    /// No SoftHSM2 module on this machine.
    #[error(
        "SoftHSM2 is not installed (no PKCS#11 module at {tried}); install it with `apt-get install softhsm2` (use sudo when not root), or set {MODULE_ENV} to a PKCS#11 module"
    )]
    NoModule {
        /// Paths tried.
        tried: String,
    },
    /// The directory holds a `softhsm2.conf` that hsm-sim did not write.
    #[error("{0} holds a softhsm2.conf that hsm-sim did not write; use a new or empty directory")]
    Exists(PathBuf),
    /// The simulation already has a token with this label.
    #[error(
        "{dir} already has a token labelled {label:?}; choose another --label (`hsm-sim status --dir {dir}` lists them)"
    )]
    LabelTaken {
        /// The simulation directory.
        dir: PathBuf,
        /// The label.
        label: String,
    },
    /// The simulation has no token with this label.
    #[error("{dir} has no token labelled {label:?} (`hsm-sim status --dir {dir}` lists them)")]
    NoToken {
        /// The simulation directory.
        dir: PathBuf,
        /// The label.
        label: String,
    },
    /// A bad object name.
    #[error("object name {0:?} must be 1 to 64 characters: letters, digits, '-', '_' or '.'")]
    Object(String),
    /// The directory does not exist.
    #[error("{0} does not exist; `hsm-sim init --dir {0} --label LABEL` creates it")]
    NoDir(PathBuf),
    /// The directory exists but is not a simulation.
    #[error(
        "{0} is not an hsm-sim directory (no softhsm2.conf written by hsm-sim): pass the directory given to `hsm-sim init`"
    )]
    NotSim(PathBuf),
    /// A bad token label.
    #[error("token label {0:?} must be 1 to 32 printable ASCII characters")]
    Label(String),
    /// The process was not started with this simulation's SOFTHSM2_CONF.
    #[error("SOFTHSM2_CONF must be {expected} in this process (it is {actual:?})")]
    WrongConf {
        /// The configuration this simulation needs.
        expected: PathBuf,
        /// What the environment says.
        actual: Option<String>,
    },
    /// No free slot to initialise.
    #[error("SoftHSM2 offered no free slot to initialise")]
    NoFreeSlot,
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A PKCS#11 call failed.
    #[error("PKCS#11 {operation} failed: {source}")]
    Pkcs11 {
        /// The call.
        operation: &'static str,
        /// cryptoki's error.
        #[source]
        source: CkError,
    },
    /// The child process that initialises the token failed.
    #[error("token initialisation failed: {0}")]
    Child(String),
    /// Randomness unavailable.
    #[error("the OS random generator failed: {0}")]
    Random(String),
}

impl SimError {
    /// A stable code for the error, as `--output json` reports it.
    pub fn code(&self) -> &'static str {
        match self {
            SimError::NoModule { .. } => "no_softhsm2",
            SimError::Exists(_) => "foreign_config",
            SimError::LabelTaken { .. } => "label_taken",
            SimError::NoToken { .. } => "no_such_token",
            SimError::Object(_) => "bad_object",
            SimError::NoDir(_) => "no_such_directory",
            SimError::NotSim(_) => "not_hsm_sim",
            SimError::Label(_) => "bad_label",
            SimError::WrongConf { .. } => "wrong_softhsm2_conf",
            SimError::NoFreeSlot => "no_free_slot",
            SimError::Io { .. } => "io",
            SimError::Pkcs11 { .. } => "pkcs11",
            SimError::Child(_) => "token_init",
            SimError::Random(_) => "random",
        }
    }
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SimError {
    let path = path.to_owned();
    move |source| SimError::Io { what, path, source }
}

fn ck(operation: &'static str) -> impl FnOnce(CkError) -> SimError {
    move |source| SimError::Pkcs11 { operation, source }
}

/// The files of one simulation directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// The directory.
    pub dir: PathBuf,
    /// Its `softhsm2.conf` (the value for `SOFTHSM2_CONF`).
    pub softhsm2_conf: PathBuf,
    /// The token store.
    pub tokens: PathBuf,
    /// The security officer PIN file (0600).
    pub so_pin: PathBuf,
    /// The user PIN file (0600).
    pub user_pin: PathBuf,
}

impl Layout {
    /// The layout of `dir` (nothing is created). `dir` is made absolute.
    pub fn of(dir: &Path) -> Result<Self, SimError> {
        let dir = std::path::absolute(dir).map_err(io("cannot resolve", dir))?;
        Ok(Layout {
            softhsm2_conf: dir.join("softhsm2.conf"),
            tokens: dir.join("tokens"),
            so_pin: dir.join("so.pin"),
            user_pin: dir.join("user.pin"),
            dir,
        })
    }

    /// Whether `dir` holds a configuration written by hsm-sim.
    pub fn is_sim(&self) -> bool {
        fs::read_to_string(&self.softhsm2_conf).is_ok_and(|c| c.starts_with(MARKER))
    }

    /// `Ok` when `dir` holds a simulation; otherwise says whether the directory is
    /// missing or is something else.
    pub fn require_sim(&self) -> Result<(), SimError> {
        if self.is_sim() {
            Ok(())
        } else if !self.dir.exists() {
            Err(SimError::NoDir(self.dir.clone()))
        } else {
            Err(SimError::NotSim(self.dir.clone()))
        }
    }

    /// The RFC 7512 URI of `label` in this simulation, naming the object `root`, with
    /// the user PIN file as pin-source.
    pub fn uri(&self, label: &str, module: &Path) -> String {
        self.uri_of(label, "root", module)
    }

    /// [`Layout::uri`] naming `object` (`root` for a root token, `seal` for keyd's seal
    /// token, as keyd.example.toml has it).
    pub fn uri_of(&self, label: &str, object: &str, module: &Path) -> String {
        format!(
            "pkcs11:token={};object={}?module-path={}&pin-source=file:{}",
            label,
            object,
            module.display(),
            self.user_pin.display()
        )
    }
}

/// What `hsm-sim init` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provisioned {
    /// The value to export as `SOFTHSM2_CONF`.
    pub softhsm2_conf: PathBuf,
    /// The token's RFC 7512 URI.
    pub uri: String,
}

/// The PKCS#11 module to use: `$TEST_PKCS11_MODULE`, else the first of
/// [`MODULE_CANDIDATES`] that exists.
pub fn find_module() -> Result<PathBuf, SimError> {
    if let Some(m) = std::env::var_os(MODULE_ENV) {
        let p = PathBuf::from(m);
        if p.exists() {
            return Ok(p);
        }
        return Err(SimError::NoModule {
            tried: p.display().to_string(),
        });
    }
    MODULE_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .ok_or_else(|| SimError::NoModule {
            tried: MODULE_CANDIDATES.join(", "),
        })
}

/// Checks a token label (SoftHSM2 allows 32 bytes).
pub fn check_label(label: &str) -> Result<(), SimError> {
    let ok = !label.is_empty()
        && label.len() <= 32
        && label.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !label.contains([';', '?', '&', '%', '='])
        && !label.starts_with(' ')
        && !label.ends_with(' ');
    if ok {
        Ok(())
    } else {
        Err(SimError::Label(label.to_owned()))
    }
}

/// Checks an object name for a token URI: what keyd and keyctl accept in `object=`
/// without percent-encoding.
pub fn check_object(name: &str) -> Result<(), SimError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(SimError::Object(name.to_owned()))
    }
}

/// The simulation in `dir`: an existing one (its tokens share its configuration and
/// PIN files), with `false`; or a new one, created with fresh random PINs, with `true`.
///
/// Refuses a directory whose `softhsm2.conf` hsm-sim did not write.
pub fn prepare(dir: &Path) -> Result<(Layout, bool), SimError> {
    let layout = Layout::of(dir)?;
    if layout.is_sim() {
        return Ok((layout, false));
    }
    if layout.softhsm2_conf.exists() {
        return Err(SimError::Exists(layout.dir));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&layout.dir)
        .map_err(io("cannot create", &layout.dir))?;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&layout.tokens)
        .map_err(io("cannot create", &layout.tokens))?;
    write_secret_file(&layout.so_pin, &random_pin()?)?;
    write_secret_file(&layout.user_pin, &random_pin()?)?;
    let conf = format!(
        "{MARKER}\ndirectories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
        layout.tokens.display()
    );
    fs::write(&layout.softhsm2_conf, conf).map_err(io("cannot write", &layout.softhsm2_conf))?;
    Ok((layout, true))
}

/// Initialises a token labelled `label` in the free slot, with the layout's PINs.
///
/// Must run in a process started with `SOFTHSM2_CONF` = the layout's configuration.
pub fn init_token_in_process(layout: &Layout, label: &str, module: &Path) -> Result<(), SimError> {
    check_label(label)?;
    let actual = std::env::var("SOFTHSM2_CONF").ok();
    if actual.as_deref().map(Path::new) != Some(layout.softhsm2_conf.as_path()) {
        return Err(SimError::WrongConf {
            expected: layout.softhsm2_conf.clone(),
            actual,
        });
    }
    let ctx = open(module)?;
    if slot_of(&ctx, label).is_ok() {
        return Err(SimError::LabelTaken {
            dir: layout.dir.clone(),
            label: label.to_owned(),
        });
    }
    let slots = ctx.get_all_slots().map_err(ck("C_GetSlotList"))?;
    let mut free = None;
    for slot in slots {
        let info = ctx.get_token_info(slot).map_err(ck("C_GetTokenInfo"))?;
        if !info.token_initialized() {
            free = Some(slot);
            break;
        }
    }
    let slot = free.ok_or(SimError::NoFreeSlot)?;
    let so_pin = read_pin(&layout.so_pin)?;
    let user_pin = read_pin(&layout.user_pin)?;
    ctx.init_token(slot, &so_pin, label)
        .map_err(ck("C_InitToken"))?;
    // SoftHSM2 moves the new token to a new slot id: find it again by label.
    let slot = slot_of(&ctx, label)?;
    let session = ctx.open_rw_session(slot).map_err(ck("C_OpenSession"))?;
    session
        .login(UserType::So, Some(&so_pin))
        .map_err(ck("C_Login(SO)"))?;
    session.init_pin(&user_pin).map_err(ck("C_InitPIN"))?;
    Ok(())
}

/// One token of a simulation, as `hsm-sim status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenStatus {
    /// Token label.
    pub label: String,
    /// Serial number.
    pub serial: String,
    /// Whether a root secret (secret key labelled `root`) is present.
    pub has_root: bool,
    /// Number of objects visible to the user.
    pub objects: usize,
}

/// Lists the initialised tokens. Must run with `SOFTHSM2_CONF` set like
/// [`init_token_in_process`].
pub fn status_in_process(layout: &Layout, module: &Path) -> Result<Vec<TokenStatus>, SimError> {
    let ctx = open(module)?;
    let user_pin = read_pin(&layout.user_pin)?;
    let mut out = Vec::new();
    for slot in ctx
        .get_slots_with_initialized_token()
        .map_err(ck("C_GetSlotList"))?
    {
        let info = ctx.get_token_info(slot).map_err(ck("C_GetTokenInfo"))?;
        let session = ctx.open_ro_session(slot).map_err(ck("C_OpenSession"))?;
        session
            .login(UserType::User, Some(&user_pin))
            .map_err(ck("C_Login"))?;
        let objects = session
            .find_objects(&[])
            .map_err(ck("C_FindObjects"))?
            .len();
        let roots = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::Label(b"root".to_vec()),
            ])
            .map_err(ck("C_FindObjects"))?;
        out.push(TokenStatus {
            label: info.label().trim_end().to_owned(),
            serial: info.serial_number().trim_end().to_owned(),
            has_root: !roots.is_empty(),
            objects,
        });
    }
    Ok(out)
}

/// What is wrong with a root object planted by [`plant_root_in_process`]: each flaw is
/// one attribute a careless import (or an attacker with the PIN) could set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootFlaw {
    /// `CKA_EXTRACTABLE` true: the secret can be wrapped out.
    Extractable,
    /// `CKA_SENSITIVE` false: the value can be read.
    NotSensitive,
    /// `CKA_MODIFIABLE` true: attributes can be loosened later.
    Modifiable,
    /// `CKA_DERIVE` true: other keys can be derived from it.
    Derive,
    /// `CKA_ENCRYPT` true.
    Encrypt,
    /// `CKA_ALLOWED_MECHANISMS` lists more than CKM_SHA512_HMAC.
    MoreMechanisms,
    /// `CKA_KEY_TYPE` is AES instead of a generic secret.
    WrongKeyType,
}

/// Creates, on the token labelled `token`, a 64-byte secret object labelled `object`
/// like keyd's root but with `flaw`: for tests that keyd refuses it. Must run with
/// `SOFTHSM2_CONF` set like [`init_token_in_process`].
pub fn plant_root_in_process(
    layout: &Layout,
    module: &Path,
    token: &str,
    object: &str,
    flaw: RootFlaw,
) -> Result<(), SimError> {
    use cryptoki::mechanism::MechanismType;
    use cryptoki::object::KeyType;
    let ctx = open(module)?;
    let user_pin = read_pin(&layout.user_pin)?;
    let slot = slot_of(&ctx, token)?;
    let session = ctx.open_rw_session(slot).map_err(ck("C_OpenSession"))?;
    session
        .login(UserType::User, Some(&user_pin))
        .map_err(ck("C_Login"))?;
    let (key_type, value) = match flaw {
        RootFlaw::WrongKeyType => (KeyType::AES, vec![7u8; 32]),
        _ => (KeyType::GENERIC_SECRET, vec![7u8; 64]),
    };
    let mechanisms = match flaw {
        RootFlaw::MoreMechanisms => vec![MechanismType::SHA512_HMAC, MechanismType::SHA256_HMAC],
        _ => vec![MechanismType::SHA512_HMAC],
    };
    let template = [
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(key_type),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(flaw != RootFlaw::NotSensitive),
        Attribute::Extractable(flaw == RootFlaw::Extractable),
        Attribute::Modifiable(flaw == RootFlaw::Modifiable),
        Attribute::Derive(flaw == RootFlaw::Derive),
        Attribute::Encrypt(flaw == RootFlaw::Encrypt),
        Attribute::Decrypt(false),
        Attribute::Wrap(false),
        Attribute::Unwrap(false),
        Attribute::Verify(false),
        Attribute::Sign(true),
        Attribute::AllowedMechanisms(mechanisms),
        Attribute::Label(object.as_bytes().to_vec()),
        Attribute::Value(value),
    ];
    session
        .create_object(&template)
        .map_err(ck("C_CreateObject"))?;
    Ok(())
}

/// Removes a simulation: token store, configuration, PIN files, then the directory if
/// it is empty. Refuses a directory hsm-sim did not write.
pub fn destroy(dir: &Path) -> Result<(), SimError> {
    let layout = Layout::of(dir)?;
    layout.require_sim()?;
    if layout.tokens.exists() {
        fs::remove_dir_all(&layout.tokens).map_err(io("cannot remove", &layout.tokens))?;
    }
    for f in [&layout.so_pin, &layout.user_pin, &layout.softhsm2_conf] {
        if f.exists() {
            fs::remove_file(f).map_err(io("cannot remove", f))?;
        }
    }
    // Leave a directory that holds other files (it was the user's).
    let _ = fs::remove_dir(&layout.dir);
    Ok(())
}

/// The slot of the initialised token labelled `label`.
fn slot_of(ctx: &Pkcs11, label: &str) -> Result<cryptoki::slot::Slot, SimError> {
    ctx.get_slots_with_initialized_token()
        .map_err(ck("C_GetSlotList"))?
        .into_iter()
        .find(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|i| i.label().trim_end() == label)
        })
        .ok_or(SimError::NoFreeSlot)
}

fn open(module: &Path) -> Result<Pkcs11, SimError> {
    let ctx = Pkcs11::new(module).map_err(ck("module load"))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => Ok(ctx),
        Err(e) => Err(ck("C_Initialize")(e)),
    }
}

fn random_pin() -> Result<Zeroizing<String>, SimError> {
    let mut bytes = Zeroizing::new([0u8; 12]);
    getrandom::fill(bytes.as_mut()).map_err(|e| SimError::Random(e.to_string()))?;
    Ok(Zeroizing::new(hex::encode(bytes.as_ref())))
}

fn read_pin(path: &Path) -> Result<AuthPin, SimError> {
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io("cannot read", path))?);
    Ok(AuthPin::from(text.trim().to_owned()))
}

/// Writes a file readable only by its owner (0600), refusing to replace one.
pub fn write_secret_file(path: &Path, contents: &str) -> Result<(), SimError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("cannot create", path))?;
    // Enforce 0600 whatever the umask did.
    f.set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(io("cannot chmod", path))?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(io("cannot write", path))
}
