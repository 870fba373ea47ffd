//! Leader election on a `coordination.k8s.io/v1` Lease. Every replica compiles and
//! serves; only the holder writes (statuses, PrometheusRules, rule files, APIServices),
//! so two replicas never race each other's writes or delete each other's objects.
//!
//! The decision is pure ([`Elector::step`]) and follows client-go's rule: a Lease held
//! by someone else counts as expired only when this replica has seen the same record
//! for a whole lease duration on its own clock, so clock skew between nodes never
//! makes two holders.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Why one attempt to hold the Lease could not be made; said once until it changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum LeaseError {
    #[error("reading the Lease timed out after {0:?}")]
    ReadTimedOut(Duration),
    #[error("cannot read the Lease: {0}")]
    Read(String),
    #[error("writing the Lease timed out after {0:?}")]
    WriteTimedOut(Duration),
    #[error("cannot write the Lease: {0}")]
    Write(String),
}

#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's name in `holderIdentity` (the pod name in a cluster).
    pub identity: String,
    /// How long a holder that stopped renewing keeps the Lease.
    pub lease_duration: Duration,
    /// A holder that could not renew for this long stops writing.
    pub renew_deadline: Duration,
    /// How often the Lease is read and renewed.
    pub retry_period: Duration,
}

/// What to do after reading the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// There is no Lease yet: create it with us as holder.
    Create,
    /// Write us as holder: a renewal of our own Lease, or a takeover of a released or
    /// expired one.
    Claim { takeover: bool },
    /// Someone else holds a live Lease.
    Follow { holder: String },
}

/// Pure election state: what was last seen of the Lease and when.
#[derive(Debug)]
pub struct Elector {
    identity: String,
    observed: Option<(LeaseSpec, Instant)>,
}

impl Elector {
    pub fn new(identity: impl Into<String>) -> Elector {
        Elector {
            identity: identity.into(),
            observed: None,
        }
    }

    pub fn step(&mut self, lease: Option<&LeaseSpec>, now: Instant) -> Step {
        let Some(spec) = lease else {
            self.observed = None;
            return Step::Create;
        };
        let holder = spec.holder_identity.clone().unwrap_or_default();
        if holder == self.identity {
            self.observe(spec, now);
            return Step::Claim { takeover: false };
        }
        if holder.is_empty() {
            // Released by a holder that shut down cleanly.
            return Step::Claim { takeover: true };
        }
        let seen_since = self.observe(spec, now);
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
        if now.duration_since(seen_since) >= duration {
            Step::Claim { takeover: true }
        } else {
            Step::Follow { holder }
        }
    }

    /// Records `spec` and returns since when this exact record has been seen.
    fn observe(&mut self, spec: &LeaseSpec, now: Instant) -> Instant {
        match &self.observed {
            Some((seen, since)) if seen == spec => *since,
            _ => {
                self.observed = Some((spec.clone(), now));
                now
            }
        }
    }
}

/// The spec we write when claiming (`previous` is the Lease as read, if any).
pub fn claimed_spec(
    previous: Option<&LeaseSpec>,
    settings: &LeaseSettings,
    takeover: bool,
    now: jiff::Timestamp,
) -> LeaseSpec {
    // A claim of an existing Lease by someone other than its holder (released or expired)
    // is a transition, as client-go counts them; creating one is not.
    let existed = previous.is_some();
    let previous = previous.cloned().unwrap_or_default();
    let transitions = previous.lease_transitions.unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(settings.lease_duration.as_secs().max(1) as i32),
        acquire_time: if takeover || previous.acquire_time.is_none() {
            Some(MicroTime(now))
        } else {
            previous.acquire_time
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if takeover && existed {
            transitions + 1
        } else {
            transitions
        }),
        ..previous
    }
}

/// The spec a holder writes when it shuts down, so the next replica need not wait out
/// the lease duration.
pub fn released_spec(held: &LeaseSpec, now: jiff::Timestamp) -> LeaseSpec {
    LeaseSpec {
        holder_identity: None,
        lease_duration_seconds: Some(1),
        renew_time: Some(MicroTime(now)),
        ..held.clone()
    }
}

/// Until when this replica may write: the renew deadline counted from the start of its
/// last successful renewal (`None`: it does not hold the Lease). Another replica can take
/// the Lease over only a lease duration after that renewal, which is longer.
pub type WriteDeadline = Option<tokio::time::Instant>;

/// Whether this replica leads; sinks read it before every write.
#[derive(Clone, Debug)]
pub enum Leadership {
    /// A single writer (leader election switched off, or tests).
    Always,
    Elected(watch::Receiver<WriteDeadline>),
}

impl Leadership {
    /// Whether a write may be sent now: held, and within the renew deadline on the
    /// (tokio) clock, so a replica whose renewals stall stops writing at the deadline
    /// even before its election task notices.
    pub fn is_leader(&self) -> bool {
        match self {
            Leadership::Always => true,
            Leadership::Elected(deadline) => deadline
                .borrow()
                .is_some_and(|until| tokio::time::Instant::now() < until),
        }
    }

    /// Resolves when leadership is won, lost, or resumed after its deadline had passed (not
    /// at each renewal). Never resolves for `Always`, nor once the elector
    /// is gone (its task is supervised: the process stops then anyway).
    pub async fn changed(&mut self) {
        match self {
            Leadership::Always => std::future::pending().await,
            Leadership::Elected(leading) => {
                if leading.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}

/// What a successful renewal means for writers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Renewal {
    /// We did not hold the Lease: writers start.
    Won,
    /// We held it, but its deadline had passed, so writers stopped: they resume, and must
    /// be told, as on winning (what they skipped is written again).
    Resumed,
    /// Still within the deadline: writers go on; moving the deadline needs no notice.
    Kept,
}

/// Moves the write deadline to `deadline` after a renewal that ended at `now`.
fn renew(
    held: &mut WriteDeadline,
    deadline: tokio::time::Instant,
    now: tokio::time::Instant,
) -> Renewal {
    let renewal = match *held {
        None => Renewal::Won,
        Some(until) if until <= now => Renewal::Resumed,
        Some(_) => Renewal::Kept,
    };
    *held = Some(deadline);
    renewal
}

/// Runs the election until `shutdown` resolves; then releases the Lease if held.
pub struct LeaderElection {
    pub client: kube::Client,
    pub settings: LeaseSettings,
}

impl LeaderElection {
    pub fn start(
        self,
        shutdown: watch::Receiver<bool>,
    ) -> (Leadership, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = watch::channel(None);
        let task = tokio::spawn(self.run(sender, shutdown));
        (Leadership::Elected(receiver), task)
    }

    async fn run(self, leading: watch::Sender<WriteDeadline>, mut shutdown: watch::Receiver<bool>) {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), &self.settings.namespace);
        let mut elector = Elector::new(self.settings.identity.clone());
        let mut last_renewal: Option<Instant> = None;
        let mut last_problem: Option<LeaseError> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let attempt_started = tokio::time::Instant::now();
            match self.attempt(&api, &mut elector).await {
                Ok(true) => {
                    last_renewal = Some(Instant::now());
                    last_problem = None;
                    let deadline = attempt_started + self.settings.renew_deadline;
                    let renewal = leading.send_if_modified(|held| {
                        let renewal = renew(held, deadline, tokio::time::Instant::now());
                        renewal != Renewal::Kept
                    });
                    if renewal {
                        tracing::info!(
                            lease = %format!("{}/{}", self.settings.namespace, self.settings.name),
                            identity = %self.settings.identity,
                            "became the leader (or renewed past the deadline): this replica writes statuses and rules"
                        );
                    }
                }
                Ok(false) => {
                    last_renewal = None;
                    if leading.send_replace(None).is_some() {
                        tracing::warn!("lost the lease: another replica writes from now on");
                    }
                }
                Err(problem) => {
                    if last_problem.as_ref() != Some(&problem) {
                        tracing::warn!(
                            lease = %format!("{}/{}", self.settings.namespace, self.settings.name),
                            "leader election: {problem}"
                        );
                        last_problem = Some(problem);
                    }
                    // A holder that cannot renew in time must assume another replica
                    // has taken over and stop writing.
                    let overdue =
                        last_renewal.is_none_or(|at| at.elapsed() >= self.settings.renew_deadline);
                    if overdue && leading.send_replace(None).is_some() {
                        tracing::warn!(
                            "could not renew the lease within {:?}: stopped writing",
                            self.settings.renew_deadline
                        );
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.retry_period) => {}
                _ = shutdown.changed() => {}
            }
        }
        if leading.send_replace(None).is_some() {
            self.release(&api).await;
        }
    }

    /// One read and, where due, one write; `Ok(true)` when we hold the Lease afterwards.
    async fn attempt(&self, api: &Api<Lease>, elector: &mut Elector) -> Result<bool, LeaseError> {
        let timeout = self.settings.retry_period.max(Duration::from_secs(2));
        let current = tokio::time::timeout(timeout, api.get_opt(&self.settings.name))
            .await
            .map_err(|_| LeaseError::ReadTimedOut(timeout))?
            .map_err(|e| LeaseError::Read(e.to_string()))?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let now = jiff::Timestamp::now();
        let write = match elector.step(spec, Instant::now()) {
            Step::Follow { .. } => return Ok(false),
            Step::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.settings.name.clone()),
                        namespace: Some(self.settings.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(claimed_spec(None, &self.settings, true, now)),
                };
                tokio::time::timeout(timeout, api.create(&PostParams::default(), &lease)).await
            }
            Step::Claim { takeover } => {
                let mut lease = current.clone().unwrap_or_default();
                lease.spec = Some(claimed_spec(spec, &self.settings, takeover, now));
                // `replace` carries the resourceVersion we read: a concurrent claim by
                // another replica makes ours fail with 409 instead of overwriting it.
                tokio::time::timeout(
                    timeout,
                    api.replace(&self.settings.name, &PostParams::default(), &lease),
                )
                .await
            }
        };
        match write {
            Err(_) => Err(LeaseError::WriteTimedOut(timeout)),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(kube::Error::Api(status))) if status.code == 409 => Ok(false),
            Ok(Err(error)) => Err(LeaseError::Write(error.to_string())),
        }
    }

    async fn release(&self, api: &Api<Lease>) {
        let Ok(Some(mut lease)) = api.get_opt(&self.settings.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_ref() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
            return;
        }
        lease.spec = Some(released_spec(spec, jiff::Timestamp::now()));
        match api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!("released the lease"),
            Err(error) => tracing::warn!("could not release the lease: {error}"),
        }
    }
}

#[cfg(test)]
mod tests;
