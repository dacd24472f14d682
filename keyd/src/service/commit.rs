//! Changes to this keyd's branch log, committed in groups.
//!
//! Each admin change (a node added, a rekey, a revocation) is a job: a builder that
//! makes statements against the chain as it stands. A caller queues its job, then
//! either finds it done by another caller or becomes the leader: under the chain's write
//! lock the leader runs every queued job in order, appends their statements, signs one
//! new head and persists it all in one durable transaction, then answers each job. While
//! a leader's transaction is on its way to disk the next jobs queue up, so under load one
//! fsync carries many changes; alone, a change still commits at once.
//!
//! Nothing is answered before its transaction is durable, and memory never shows what
//! disk does not hold: readers wait for the write lock, and a failed transaction puts
//! memory back to what the store holds.

use std::any::Any;
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

use super::{Service, ServiceError, unix_now};
use crate::chain::{Body, Chain, Statement};
use crate::store::StoreError;

/// Most changes in one group of a replica (one etcd transaction holds them all): a
/// change writes one to three rows (its entries, an enrollment token) and a group adds
/// the head and the log's size, so 32 changes stay within etcd's 128 operations.
const REPLICA_GROUP: usize = 32;

/// What a builder returns: statements to append, an optional enrollment token record
/// (`(hash, record)`, committed with them), and the caller's value.
pub(super) struct Built<T> {
    pub(super) statements: Vec<Statement>,
    pub(super) token: Option<(Vec<u8>, Vec<u8>)>,
    pub(super) value: T,
}

type Value = Box<dyn Any + Send>;
type Builder = Box<dyn FnOnce(&Service, &Chain) -> Result<Built<Value>, ServiceError> + Send>;

struct Job {
    build: Builder,
    reply: Sender<Result<Value, ServiceError>>,
}

/// The queue of jobs and the leader's lock.
#[derive(Default)]
pub(super) struct Commits {
    queue: Mutex<Vec<Job>>,
    leader: Mutex<()>,
}

/// The same failure for each job of a failed group.
fn failure(e: &ServiceError) -> ServiceError {
    match e {
        ServiceError::Chain(r) => ServiceError::Chain(r.clone()),
        ServiceError::Store(StoreError::Conflict(m)) => {
            ServiceError::Store(StoreError::Conflict(m.clone()))
        }
        ServiceError::Store(StoreError::Unavailable { what, detail }) => {
            ServiceError::Store(StoreError::Unavailable {
                what: what.clone(),
                detail: detail.clone(),
            })
        }
        other => ServiceError::Uncommitted(format!("the change was not committed: {other}")),
    }
}

impl Service {
    /// `body` as a statement of this keyd's branch, signed by the branch key now.
    pub(super) fn branch_statement(&self, body: Body) -> Result<Statement, ServiceError> {
        let key = self.material(&self.branch_path)?;
        Ok(Statement::sign(
            body,
            self.branch_path.clone(),
            unix_now(),
            key.signing_key(),
        ))
    }

    /// Appends the statements `build` makes against the current chain to this keyd's
    /// branch log and returns once they are durable (with the new head and the token
    /// record, if any), in a group with any changes made at the same time.
    pub(super) fn append<T: Send + 'static>(
        &self,
        build: impl FnOnce(&Service, &Chain) -> Result<Built<T>, ServiceError> + Send + 'static,
    ) -> Result<T, ServiceError> {
        self.require_serving()?;
        self.require_current()?;
        self.require_reachable()?;
        let (reply, answer) = channel();
        let build: Builder = Box::new(move |svc, chain| {
            build(svc, chain).map(|b| Built {
                statements: b.statements,
                token: b.token,
                value: Box::new(b.value) as Value,
            })
        });
        lock(&self.commits.queue).push(Job { build, reply });
        let result = match answer.try_recv() {
            Ok(r) => r,
            Err(_) => {
                let _leader = lock(&self.commits.leader);
                // A leader answers every job it took before it lets go; a job not yet
                // answered is still in the queue, and this leader takes it.
                // A replica's groups are bounded: the leader goes on until its own job
                // is answered.
                loop {
                    if let Ok(r) = answer.try_recv() {
                        break r;
                    }
                    let jobs = {
                        let mut queue = lock(&self.commits.queue);
                        if self.replicated() && queue.len() > REPLICA_GROUP {
                            queue.drain(..REPLICA_GROUP).collect()
                        } else {
                            std::mem::take(&mut *queue)
                        }
                    };
                    if jobs.is_empty() {
                        break answer.recv().map_err(|_| {
                            ServiceError::Uncommitted("the commit was lost".into())
                        })?;
                    }
                    // A replica first takes in what the others committed, so that its
                    // group extends the log as etcd holds it.
                    if let Err(e) = self.follow_logs() {
                        tracing::warn!(error = %e, "replica: could not catch up before a commit");
                    }
                    self.commit_group(jobs);
                }
            }
        };
        result.and_then(|v| {
            v.downcast::<T>()
                .map(|v| *v)
                .map_err(|_| ServiceError::Uncommitted("a commit answered the wrong type".into()))
        })
    }

    /// Runs `jobs` in order against the chain, commits what they built in one
    /// transaction, and answers each.
    fn commit_group(&self, jobs: Vec<Job>) {
        let log = &self.branch_path;
        let mut chain = self.chain.write().unwrap_or_else(|e| e.into_inner());
        let first = chain.entries(log).len();
        let head_before = chain.head(log).cloned();
        let now = unix_now();
        let mut done = Vec::new();
        let mut tokens = Vec::new();
        let mut broken = None;
        for job in jobs {
            if broken.is_some() {
                // After a change that failed half-way the group is not committed.
                done.push((job.reply, None));
                continue;
            }
            let built = match (job.build)(self, &chain) {
                Ok(b) => b,
                Err(e) => {
                    let _ = job.reply.send(Err(e));
                    continue;
                }
            };
            let before = chain.entries(log).len();
            let mut refused = None;
            for st in built.statements {
                if let Err(rule) = chain.append(log, st, now) {
                    refused = Some(rule);
                    break;
                }
            }
            match refused {
                // Refused at its first statement: nothing of it is in the chain.
                Some(rule) if chain.entries(log).len() == before => {
                    let _ = job.reply.send(Err(rule.into()));
                }
                Some(rule) => {
                    let e = ServiceError::from(rule);
                    broken = Some(failure(&e));
                    let _ = job.reply.send(Err(e));
                }
                None => {
                    tokens.extend(built.token);
                    done.push((job.reply, Some(built.value)));
                }
            }
        }
        let committed = match broken {
            Some(e) => Err(e),
            None if done.is_empty() => return,
            None => self.persist(&mut chain, first, now, &tokens),
        };
        if let Err(e) = &committed {
            tracing::error!(error = %e, "chain: a group of changes was not committed");
            // Keep memory equal to disk. A replica cut off from etcd cannot read it
            // back: its chain is rebuilt from memory without the group's entries.
            let restored = if self.replicated() {
                super::replica::rolled_back(&chain, log, first, head_before)
            } else {
                self.reload_chain()
            };
            match restored {
                Ok(c) => *chain = c,
                Err(e) => tracing::error!(error = %e, "chain: reloading the stored chain failed"),
            }
        }
        for (reply, value) in done {
            let _ = reply.send(match (&committed, value) {
                (Ok(()), Some(v)) => Ok(v),
                (Err(e), _) => Err(failure(e)),
                (Ok(()), None) => Err(ServiceError::Uncommitted(
                    "the change was not committed".into(),
                )),
            });
        }
    }

    /// Signs the branch head over everything appended since `first` and stores it all
    /// in one transaction.
    fn persist(
        &self,
        chain: &mut Chain,
        first: usize,
        now: u64,
        tokens: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(), ServiceError> {
        let log = &self.branch_path;
        let branch_key = self.material(log)?;
        let head = chain.sign_head(log, branch_key.signing_key(), now)?.clone();
        let tokens: Vec<(&[u8], &[u8])> = tokens
            .iter()
            .map(|(h, r)| (h.as_slice(), r.as_slice()))
            .collect();
        self.store
            .append_logs(&chain.entries(log)[first..], &[&head], &tokens)?;
        for e in &chain.entries(log)[first..] {
            tracing::info!(log = %e.log, seq = e.seq, kind = e.statement.body.kind(),
                signer = %e.statement.signer, "chain: appended");
        }
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
