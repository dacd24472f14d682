//! `keyd backup` and `keyd restore`: a consistent copy of the store, taken while keyd
//! serves (the running keyd writes it) or while it is stopped; and putting one back,
//! refused when it would roll the branch log back behind the last head this keyd
//! signed (the mark on the seal token), unless forced.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use keyd::config::Config;
use keyd::hsm::Hsm;
use keyd::service::Service;
use keyd::store::{Store, StoreError, key};
use serde_json::json;

use super::report::{Refusal, Report};

/// What the backup holds, said every time: it is of use only with the seal token.
const SEALED: &str =
    "secrets in it stay sealed by the seal token: without that token the backup opens nothing";

/// Where a serving keyd writes the backups `keyd backup` asks it for.
fn backups_dir(config: &Config) -> PathBuf {
    config.data_dir.join("backups")
}

/// `keyd backup --out FILE`.
pub fn backup(config: &Config, out: &Path) -> Result<Report> {
    if let Some(e) = &config.etcd {
        bail!(
            "this keyd is replica {} of a group whose state is in etcd: back up etcd itself (etcdctl snapshot save), and each replica's data directory with its seal token",
            e.store.replica
        );
    }
    if out.exists() {
        return Err(Refusal::error(
            "out_exists",
            format!("{} already exists; give a new file", out.display()),
        ));
    }
    let (rows, how) = match Store::open(&config.db_path()) {
        Ok(store) => (store.backup(out)?, "keyd is stopped: copied from the store"),
        Err(StoreError::InUse(_)) => (ask_serving_keyd(config, out)?, "taken by the serving keyd"),
        Err(e) => return Err(e.into()),
    };
    Ok(Report {
        json: json!({"out": out.display().to_string(), "rows": rows, "how": how, "note": SEALED}),
        text: format!(
            "backup written to {} ({rows} rows; {how})\n  {SEALED}",
            out.display()
        ),
    })
}

/// Asks the keyd serving this store for a backup (a request file in its data
/// directory, which it looks for every second), then moves the copy to `out`.
fn ask_serving_keyd(config: &Config, out: &Path) -> Result<u64> {
    let dir = backups_dir(config);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let name = format!("backup-{}-{}", keyd::unix_now(), std::process::id());
    let (request, done, file) = (
        dir.join(format!("{name}.request")),
        dir.join(format!("{name}.done")),
        dir.join(format!("{name}.redb")),
    );
    std::fs::write(&request, b"").with_context(|| format!("cannot write {}", request.display()))?;
    let started = Instant::now();
    while !done.exists() {
        if started.elapsed() > Duration::from_secs(120) {
            let _ = std::fs::remove_file(&request);
            bail!(
                "the serving keyd did not answer the backup request within 120 s (is `keyd serve` running with this keyd.toml?)"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let answer: serde_json::Value = serde_json::from_slice(&std::fs::read(&done)?)?;
    let _ = std::fs::remove_file(&done);
    if answer["ok"] != true {
        let _ = std::fs::remove_file(&file);
        bail!(
            "the serving keyd could not write the backup: {}",
            answer["error"]
        );
    }
    copy_private(&file, out)?;
    std::fs::remove_file(&file)?;
    Ok(answer["rows"].as_u64().unwrap_or(0))
}

/// Copies `from` to `to`, a new file (0600), synced.
fn copy_private(from: &Path, to: &Path) -> Result<()> {
    let mut src = std::fs::File::open(from)?;
    let mut dst = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .with_context(|| format!("cannot create {}", to.display()))?;
    std::io::copy(&mut src, &mut dst)?;
    dst.sync_all()?;
    keyd::sync_dir(to)?;
    Ok(())
}

/// The serving keyd's side: answers every backup request in its data directory.
pub fn answer_requests(svc: &Service) {
    let dir = backups_dir(svc.config());
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".request"))
            .map(str::to_owned)
        else {
            continue;
        };
        let file = dir.join(format!("{name}.redb"));
        let answer = match svc.backup(&file) {
            Ok(rows) => json!({"ok": true, "rows": rows}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        };
        let _ = std::fs::write(dir.join(format!("{name}.done")), answer.to_string());
        let _ = std::fs::remove_file(&path);
    }
}

/// `keyd restore FILE [--force]` (keyd stopped).
pub fn restore(config: &Config, file: &Path, force: bool) -> Result<Report> {
    if let Some(e) = &config.etcd {
        bail!(
            "this keyd is replica {} of a group whose state is in etcd: back up etcd itself (etcdctl snapshot save), and each replica's data directory with its seal token",
            e.store.replica
        );
    }
    let db = config.db_path();
    let current = Store::open(&db)?;
    let backup = Store::open(file).map_err(|e| match e {
        StoreError::Missing(_) => {
            Refusal::error("no_backup", format!("{} does not exist", file.display()))
        }
        e => Refusal::error(
            "not_a_backup",
            format!("{} is not a keyd store: {e}", file.display()),
        ),
    })?;
    let branch = |s: &Store| -> Result<Option<String>> {
        Ok(s.meta(key::BRANCH_PATH)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    };
    let (ours, theirs) = (branch(&current)?, branch(&backup)?);
    let Some(theirs) = theirs else {
        return Err(Refusal::error(
            "not_a_backup",
            format!(
                "{} holds no branch: not a backup of an imported keyd",
                file.display()
            ),
        ));
    };
    if ours.as_ref().is_some_and(|o| *o != theirs) {
        return Err(Refusal::error(
            "other_branch",
            format!(
                "{} is a backup of branch {theirs}; this keyd serves {}",
                file.display(),
                ours.unwrap_or_default()
            ),
        ));
    }
    let path: keyd::derive::KeyPath = theirs.parse()?;
    let chain = keyd::service::restore_chain(&backup)
        .with_context(|| format!("the chain in {}", file.display()))?;
    let head = chain
        .head(&path)
        .cloned()
        .context("the backup holds no head of its branch log")?;
    // The last head this keyd signed, on the seal token.
    let hsm = Hsm::open(&config.seal_hsm)?;
    let mark = hsm
        .read_marks()?
        .iter()
        .filter_map(|b| keyd::chain::decode_exact::<keyd::chain::Head>(b, 1024).ok())
        .max_by_key(|m| (m.seq, m.signed_at));
    if let Some(mark) = &mark {
        let entries = chain.entries(&path);
        let holds = usize::try_from(mark.seq)
            .ok()
            .and_then(|i| entries.get(i))
            .is_some_and(|e| e.hash() == mark.hash);
        if !holds && !force {
            return Err(Refusal::error(
                "backup_behind",
                format!(
                    "{} ends its branch log {path} at seq {}, but this keyd signed seq {} at {}: restoring it would lose (or un-revoke) what came after; restore a newer backup, rebuild from the root and a peer's copy of the log, or pass --force to roll back anyway",
                    file.display(),
                    head.seq,
                    mark.seq,
                    keyd::rfc3339(mark.signed_at)
                ),
            ));
        }
    }
    drop((current, backup));
    // A name no earlier restore used (two restores in one second keep both stores).
    let kept = (1..)
        .map(|n| db.with_extension(format!("redb.replaced-{}-{n}", keyd::unix_now())))
        .find(|p| !p.exists())
        .context("no free name for the replaced store")?;
    let staged = db.with_extension("redb.restoring");
    let _ = std::fs::remove_file(&staged);
    copy_private(file, &staged)?;
    // The old store is linked aside, then the copy renamed over it: at every moment
    // (a crash included) keyd.redb is the old store or the restored one, never absent.
    std::fs::hard_link(&db, &kept).with_context(|| format!("cannot keep {}", db.display()))?;
    std::fs::rename(&staged, &db).with_context(|| format!("cannot restore {}", db.display()))?;
    keyd::sync_dir(&db)?;
    let rolled_back = mark.as_ref().is_some_and(|m| m.seq > head.seq || force);
    if force {
        // keyd serves only from a store that holds the mark: the mark follows the backup.
        hsm.write_mark(&keyd::chain::cbor_bytes(&head))?;
    }
    Ok(Report {
        json: json!({"restored": file.display().to_string(), "branch": path.to_string(),
            "branch_head_seq": head.seq, "previous_store": kept.display().to_string(),
            "forced": force, "rolled_back": rolled_back && force}),
        text: format!(
            "restored {} (branch {path}, log at seq {}); the previous store is kept as {}{}",
            file.display(),
            head.seq,
            kept.display(),
            if force {
                "\n  forced: the mark on the seal token now names this backup's head"
            } else {
                ""
            }
        ),
    })
}
