//! Backups: taken while keyd serves and while it is stopped, restored in place; a backup
//! behind the last head keyd signed is refused unless forced, and forcing rolls the
//! branch log (and the seal token's mark) back.

use std::path::Path;

use anyhow::{Result, ensure};
use serde_json::json;

use crate::cluster::Cluster;

fn s(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn exists(c: &Cluster, name: &str) -> Result<bool> {
    Ok(c.admin()?.get(&format!("/v1/nodes/{name}"))?.0 == 200)
}

#[test]
fn backups_are_taken_live_and_restored_but_never_silently_behind() -> Result<()> {
    let mut c = Cluster::start()?;
    let admin = c.admin()?;
    ensure!(admin.post("/v1/nodes", &json!({"name": "before"}))?.0 == 201);

    // While keyd serves: the serving keyd writes it.
    let early = c.dir.path().join("early.redb");
    let said = c.keyd(&["backup", "--out", s(&early)])?;
    ensure!(
        said.contains("taken by the serving keyd") && said.contains("sealed by the seal token"),
        "{said}"
    );
    ensure!(crate::helpers::mode(&early)? == 0o600);
    let again = c.keyd(&["backup", "--out", s(&early)]);
    ensure!(
        again.is_err_and(|e| e.to_string().contains("already exists")),
        "never overwritten"
    );

    // The branch log moves on, and keyd marks its new head on the seal token.
    ensure!(admin.post("/v1/nodes", &json!({"name": "after"}))?.0 == 201);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    c.kill9()?;

    // Stopped: copied from the store.
    let current = c.dir.path().join("current.redb");
    let said = c.keyd(&["backup", "--out", s(&current)])?;
    ensure!(said.contains("keyd is stopped"), "{said}");

    // The early backup is behind the last head keyd signed: refused, naming both.
    let refused = c.keyd(&["restore", s(&early)]);
    ensure!(
        refused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("this keyd signed seq")
                && e.to_string().contains("--force")),
        "{refused:?}"
    );
    // Not a keyd store at all: refused too.
    let junk = c.dir.path().join("junk.redb");
    std::fs::write(&junk, b"not a database")?;
    ensure!(
        c.keyd(&["restore", s(&junk)])
            .is_err_and(|e| e.to_string().contains("not a keyd store"))
    );

    // A restore killed while copying leaves a partial staged copy beside the store: the
    // store is untouched (keyd serves from it), and the next restore starts afresh.
    let db = c.data().join("keyd.redb");
    let partial = std::fs::read(&current)?;
    std::fs::write(
        db.with_extension("redb.restoring"),
        &partial[..partial.len() / 2],
    )?;
    c.serve()?;
    ensure!(exists(&c, "before")? && exists(&c, "after")?);
    c.kill9()?;

    // The current one restores, and keyd serves everything from it.
    let said = c.keyd(&["restore", s(&current)])?;
    ensure!(said.contains("previous store is kept"), "{said}");
    c.serve()?;
    ensure!(exists(&c, "before")? && exists(&c, "after")?);
    c.kill9()?;

    // Forced: the branch log goes back to the early backup, and keyd serves from it.
    let said = c.keyd(&["restore", s(&early), "--force"])?;
    ensure!(said.contains("forced"), "{said}");
    c.serve()?;
    ensure!(exists(&c, "before")? && !exists(&c, "after")?);
    Ok(())
}
