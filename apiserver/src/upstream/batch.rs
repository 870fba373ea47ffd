//! Single-object requests batched per group: the same rule, namespace and metric
//! selector, i.e. the same query but for the object matcher. A group sends at most one
//! query at a time; requests that come while it runs (or within the batch window) wait
//! for the next one, which names all their objects at once. Each request then takes
//! only the series whose object label is its object's name: nothing of another
//! namespace can be in the answer (the namespace matcher is the group's), and nothing
//! of another object is handed out.
//!
//! A batch relies on the rule being *separable by object* — its value for one object
//! depends only on that object's series — which the compiler proves from the parsed
//! template ([`MetricRule::separable`]); rules it cannot prove it for (`… or on()
//! vector(0)`, a share of a total, `topk` across objects) are never batched and each
//! request asks alone. Rules whose query has no `<<.GroupBy>>` are never batched either,
//! and an answer in which a series has no object label, or an object has several series,
//! makes each request ask again on its own.

mod values;

use values::{BatchValues, Coverage};

use super::{QueryError, Samples, Upstream, lock};
use crate::prometheus::{PrometheusError, Sample};
use crate::render::MAX_REGEX_OBJECTS;
use crate::render::{ObjectSelection, RenderRequest, render_query};
use crate::table::{MetricRule, ObjectKind, Segment};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use tokio::time::Instant;

/// One object's value, as a request for it alone would have asked.
#[derive(Clone, Copy, Debug)]
pub struct ObjectRequest<'a> {
    pub rule: &'a Arc<MetricRule>,
    pub namespace: &'a str,
    /// Escaped matchers of the request's `metricLabelSelector`.
    pub metric_matchers: &'a [String],
    pub name: &'a str,
}

/// What a batch says about one object.
#[derive(Clone, Debug, PartialEq)]
pub enum ObjectAnswer {
    /// The object's only series.
    Value(Sample),
    /// The answer covered the object and had no series for it.
    Absent,
    /// The batch cannot tell (a series without the object label, or several series for
    /// the object): the caller asks for the object alone.
    Ambiguous,
}

/// Whether requests for several objects of `rule` may be asked as one query: the rule is
/// separable by object and its answers can be told apart by the object label.
pub fn batchable(rule: &MetricRule) -> bool {
    let names_objects =
        !(rule.object == ObjectKind::Namespace && rule.object_label == rule.namespace_label);
    names_objects && rule.separable && rule.template.segments().contains(&Segment::GroupBy)
}

type BatchOutcome = Result<Arc<BatchValues>, QueryError>;
type BatchReceiver = watch::Receiver<Option<BatchOutcome>>;

struct Pending {
    /// Objects requested and waiting.
    names: BTreeSet<String>,
    created: Instant,
    sender: watch::Sender<Option<BatchOutcome>>,
    receiver: BatchReceiver,
}

struct InFlight {
    coverage: Coverage,
    receiver: BatchReceiver,
}

struct Group {
    /// Its key in [`Groups`], to weigh it again.
    key: Arc<str>,
    rule: Arc<MetricRule>,
    namespace: String,
    metric_matchers: Vec<String>,
    pending: Option<Pending>,
    in_flight: Option<InFlight>,
    /// When each object was last asked for (only with the cache on).
    recent: HashMap<String, Instant>,
    /// Cached answers per object and when their query was sent.
    cached: HashMap<String, (ObjectAnswer, Instant)>,
    /// When the last answer covering the whole namespace was sent for.
    namespace_wide: Option<Instant>,
    /// What the names in `recent` and `cached` hold, [`NAME_OVERHEAD`] each included.
    name_bytes: usize,
    /// `name_bytes` when moka last weighed the group.
    weighed_name_bytes: usize,
}

impl Group {
    /// Notes that `name` was asked for now.
    fn asked(&mut self, name: &str, now: Instant) {
        match self.recent.get_mut(name) {
            Some(at) => *at = now,
            None => {
                self.name_bytes += name.len() + NAME_OVERHEAD;
                self.recent.insert(name.to_owned(), now);
            }
        }
    }

    fn cache(&mut self, name: &str, answer: ObjectAnswer, sent: Instant) {
        match self.cached.get_mut(name) {
            Some(entry) => *entry = (answer, sent),
            None => {
                self.name_bytes += name.len() + NAME_OVERHEAD;
                self.cached.insert(name.to_owned(), (answer, sent));
            }
        }
    }

    /// Drops the names asked for longer ago than `horizon` and the answers older than
    /// `max_age`.
    fn forget_older(&mut self, horizon: std::time::Duration, max_age: std::time::Duration) {
        self.recent.retain(|_, at| at.elapsed() <= horizon);
        self.cached.retain(|_, (_, at)| at.elapsed() <= max_age);
        self.name_bytes = self
            .recent
            .keys()
            .chain(self.cached.keys())
            .map(|name| name.len() + NAME_OVERHEAD)
            .sum();
    }

    /// Its key when its names grew by more than a quarter (and a little) since moka
    /// weighed it, for [`Groups::weigh_again`]; the weighing is then taken as done.
    /// Asked under the lock the caller holds anyway, so a request takes it only once.
    fn key_to_weigh_again(&mut self) -> Option<Arc<str>> {
        let due = self.name_bytes > self.weighed_name_bytes * 5 / 4 + REWEIGH_BYTES;
        due.then(|| {
            self.weighed_name_bytes = self.name_bytes;
            self.key.clone()
        })
    }

    /// The freshest answer for `name` no older than `max_age`, and when its query was sent.
    fn cached(&self, name: &str, max_age: std::time::Duration) -> Option<(ObjectAnswer, Instant)> {
        let fresh = |at: &Instant| at.elapsed() <= max_age;
        let entry = self.cached.get(name).filter(|(_, at)| fresh(at));
        let wide = self.namespace_wide.filter(fresh);
        match (entry, wide) {
            (Some((_, at)), Some(wide)) if wide > *at => Some((ObjectAnswer::Absent, wide)),
            (Some((answer, at)), _) => Some((answer.clone(), *at)),
            (None, Some(wide)) => Some((ObjectAnswer::Absent, wide)),
            (None, None) => None,
        }
    }
}

/// Bytes the groups may hold, weighed by what they keep of their request.
const GROUPS_MAX_BYTES: u64 = 8 << 20;
/// What a group costs besides its key, namespace, matchers and names.
const GROUP_OVERHEAD: usize = 512;
/// What a remembered object name costs besides its bytes (its map slot, instant, answer).
const NAME_OVERHEAD: usize = 64;
/// Growth of a group's names below which it is not weighed again: together with the
/// quarter of [`Group::key_to_weigh_again`], what a group may hold beyond its weight.
const REWEIGH_BYTES: usize = 1024;

/// The groups by their query for all objects. Their keys come from clients (namespaces,
/// metric selectors), and so do the object names each remembers, so moka bounds them in
/// bytes (names included), evicts them one by one, and drops a group nobody asked for
/// since its objects' answers could be reused. A group evicted while its query runs still
/// answers its waiters (they hold it); a request after that starts a new one.
pub(super) struct Groups(moka::sync::Cache<Arc<str>, Arc<Mutex<Group>>>);

impl Groups {
    /// Bytes held, after moka has applied its pending evictions.
    #[cfg(test)]
    pub(super) fn weighed_bytes(&self) -> u64 {
        self.0.run_pending_tasks();
        self.0.weighted_size()
    }

    /// Bytes of the object names the groups remember, counted in their maps.
    #[cfg(test)]
    pub(super) fn remembered_name_bytes(&self) -> usize {
        self.0.run_pending_tasks();
        self.0
            .iter()
            .map(|(_, group)| {
                let state = lock(&group);
                state
                    .recent
                    .keys()
                    .chain(state.cached.keys())
                    .map(String::len)
                    .sum::<usize>()
            })
            .sum()
    }

    pub(super) fn new(options: &super::QueryOptions) -> Self {
        Groups(
            moka::sync::Cache::builder()
                .max_capacity(GROUPS_MAX_BYTES)
                .weigher(|key: &Arc<str>, group: &Arc<Mutex<Group>>| {
                    let group = lock(group);
                    let matchers: usize = group.metric_matchers.iter().map(String::len).sum();
                    let bytes = key.len()
                        + group.namespace.len()
                        + matchers
                        + group.name_bytes
                        + GROUP_OVERHEAD;
                    u32::try_from(bytes).unwrap_or(u32::MAX)
                })
                .time_to_idle(
                    options
                        .recent_horizon
                        .max(options.cache_max_age)
                        .max(std::time::Duration::from_secs(1)),
                )
                .build(),
        )
    }

    /// moka weighs an entry only when it is inserted, and a group's names grow after
    /// that: a group whose names grew is inserted again under `key` (if it is still the
    /// one there), so that what it holds counts against the bound. Called outside the
    /// group's lock: the weigher takes it.
    fn weigh_again(&self, key: Arc<str>, group: &Arc<Mutex<Group>>) {
        if self
            .0
            .get(&key)
            .is_some_and(|current| Arc::ptr_eq(&current, group))
        {
            self.0.insert(key, group.clone());
        }
    }
}

/// What a request gets from its group at once.
enum Step {
    Cached(ObjectAnswer),
    Wait(BatchReceiver),
}

impl Upstream {
    /// One object's value; `Ambiguous` when the caller must ask for the object alone.
    pub async fn object(&self, request: ObjectRequest<'_>) -> Result<ObjectAnswer, QueryError> {
        if !batchable(request.rule) {
            return Ok(ObjectAnswer::Ambiguous);
        }
        let key: Arc<str> = render_query(
            request.rule,
            &RenderRequest {
                namespace: request.namespace,
                objects: ObjectSelection::All,
                metric_matchers: request.metric_matchers,
            },
        )
        .into();
        let group = self.group(key, &request);
        let (step, grown) = {
            let mut state = lock(&group);
            let options = self.inner.options;
            let max_age = self.max_age(request.rule.bounds);
            let now = Instant::now();
            let cached = if options.cache_max_age.is_zero() {
                None
            } else {
                state.asked(request.name, now);
                state.cached(request.name, max_age)
            };
            let step = if let Some((answer, sent)) = cached {
                self.inner.metrics.cache_hits.inc();
                // Refresh ahead: past half its age, the answer is renewed in the
                // background, so the requests after this one find a fresh answer
                // instead of waiting for a query. What is served is still never
                // older than the maximum age.
                if sent.elapsed() * 2 > max_age
                    && state.pending.is_none()
                    && state.in_flight.is_none()
                {
                    let (sender, receiver) = watch::channel(None);
                    state.pending = Some(Pending {
                        names: BTreeSet::from([request.name.to_owned()]),
                        created: now,
                        sender,
                        receiver,
                    });
                    self.flush(&group, &mut state);
                }
                Step::Cached(answer)
            } else if let Some(in_flight) = state
                .in_flight
                .as_ref()
                .filter(|f| f.coverage.covers(request.name))
            {
                self.inner.metrics.queries_coalesced.inc();
                Step::Wait(in_flight.receiver.clone())
            } else if let Some(pending) = state.pending.as_mut() {
                pending.names.insert(request.name.to_owned());
                Step::Wait(pending.receiver.clone())
            } else {
                let (sender, receiver) = watch::channel(None);
                state.pending = Some(Pending {
                    names: BTreeSet::from([request.name.to_owned()]),
                    created: now,
                    sender,
                    receiver: receiver.clone(),
                });
                if options.batch_window.is_zero() {
                    if state.in_flight.is_none() {
                        self.flush(&group, &mut state);
                    }
                } else {
                    self.flush_after_window(&group);
                }
                Step::Wait(receiver)
            };
            (step, state.key_to_weigh_again())
        };
        if let Some(key) = grown {
            self.inner.groups.weigh_again(key, &group);
        }
        match step {
            Step::Cached(answer) => Ok(answer),
            Step::Wait(receiver) => self.wait_batch(receiver, request.name).await,
        }
    }

    fn group(&self, key: Arc<str>, request: &ObjectRequest<'_>) -> Arc<Mutex<Group>> {
        self.inner.groups.0.get_with(key.clone(), || {
            Arc::new(Mutex::new(Group {
                key,
                rule: request.rule.clone(),
                namespace: request.namespace.to_owned(),
                metric_matchers: request.metric_matchers.to_vec(),
                pending: None,
                in_flight: None,
                recent: HashMap::new(),
                cached: HashMap::new(),
                namespace_wide: None,
                name_bytes: 0,
                weighed_name_bytes: 0,
            }))
        })
    }

    fn flush_after_window(&self, group: &Arc<Mutex<Group>>) {
        let (upstream, group) = (self.clone(), group.clone());
        let window = self.inner.options.batch_window;
        tokio::spawn(async move {
            tokio::time::sleep(window).await;
            let mut state = lock(&group);
            // Otherwise the running query's end sends it.
            if state.in_flight.is_none() {
                upstream.flush(&group, &mut state);
            }
        });
    }

    /// Sends the pending batch (under the group's lock), with the recently asked objects
    /// of the group when the cache is on.
    fn flush(&self, group: &Arc<Mutex<Group>>, state: &mut Group) {
        let Some(pending) = state.pending.take() else {
            return;
        };
        let options = self.inner.options;
        let requested = pending.names;
        let mut names = requested.clone();
        if !options.cache_max_age.is_zero() {
            // Answers past the age they may be served at are of no use any more.
            state.forget_older(options.recent_horizon, options.cache_max_age);
            names.extend(state.recent.keys().cloned());
        }
        let coverage = if names.len() > MAX_REGEX_OBJECTS {
            Coverage::Namespace
        } else {
            Coverage::Names(names)
        };
        state.in_flight = Some(InFlight {
            coverage: coverage.clone(),
            receiver: pending.receiver,
        });
        let rule = state.rule.clone();
        let namespace = state.namespace.clone();
        let matchers = state.metric_matchers.clone();
        let (upstream, group, sender) = (self.clone(), group.clone(), pending.sender);
        tokio::spawn(async move {
            // Names as asked, however many: past MAX_REGEX_OBJECTS the group asks for
            // the namespace already, and the fallback for a namespace too large to answer
            // must not ask for it again.
            let render = |coverage: &Coverage| {
                let names: Vec<String> = match coverage {
                    Coverage::Namespace => Vec::new(),
                    Coverage::Names(set) => set.iter().cloned().collect(),
                };
                let objects = match (coverage, names.as_slice()) {
                    (Coverage::Namespace, _) => ObjectSelection::All,
                    (Coverage::Names(_), [one]) => ObjectSelection::One(one),
                    (Coverage::Names(_), names) => ObjectSelection::Many(names),
                };
                render_query(
                    &rule,
                    &RenderRequest {
                        namespace: &namespace,
                        objects,
                        metric_matchers: &matchers,
                    },
                )
            };
            let sent = Instant::now();
            let mut coverage = coverage;
            let mut outcome = upstream.send(&render(&coverage), rule.bounds.timeout).await;
            // Refreshing others must never cost a request its answer: a namespace too big
            // for one answer, or a query too heavy for Prometheus, is asked again for the
            // requested objects only.
            let too_much = matches!(
                &outcome,
                Err(QueryError::Prometheus(
                    PrometheusError::TooLarge { .. } | PrometheusError::Rejected { .. }
                ))
            );
            let requested_coverage = Coverage::Names(requested.clone());
            if too_much && coverage != requested_coverage {
                coverage = requested_coverage;
                outcome = upstream.send(&render(&coverage), rule.bounds.timeout).await;
            }
            let asked = match &coverage {
                Coverage::Names(names) => names.len(),
                Coverage::Namespace => usize::MAX,
            };
            if asked > 1 {
                upstream
                    .inner
                    .metrics
                    .requests_batched
                    .inc_by(requested.len() as u64);
            }
            let outcome: BatchOutcome = outcome.map(|samples: Samples| {
                Arc::new(BatchValues::new(coverage, &samples, &rule.object_label))
            });
            let grown = {
                let mut state = lock(&group);
                if let Ok(values) = &outcome {
                    upstream.remember(&mut state, values, sent);
                }
                state.in_flight = None;
                let window = upstream.inner.options.batch_window;
                if state
                    .pending
                    .as_ref()
                    .is_some_and(|p| p.created.elapsed() >= window)
                {
                    upstream.flush(&group, &mut state);
                }
                state.key_to_weigh_again()
            };
            if let Some(key) = grown {
                upstream.inner.groups.weigh_again(key, &group);
            }
            sender.send_replace(Some(outcome));
        });
    }

    /// Puts a batch's answers in the group's cache (when on), dated when it was sent.
    fn remember(&self, state: &mut Group, values: &BatchValues, sent: Instant) {
        let max_age = self.inner.options.cache_max_age;
        if max_age.is_zero() || values.ambiguous {
            return;
        }
        state.forget_older(self.inner.options.recent_horizon, max_age);
        for (name, answer) in &values.by_name {
            if *answer != ObjectAnswer::Ambiguous {
                state.cache(name, answer.clone(), sent);
            }
        }
        match &values.coverage {
            Coverage::Namespace => state.namespace_wide = Some(sent),
            Coverage::Names(names) => {
                for name in names {
                    if !values.by_name.contains_key(name) {
                        state.cache(name, ObjectAnswer::Absent, sent);
                    }
                }
            }
        }
    }

    async fn wait_batch(
        &self,
        mut receiver: BatchReceiver,
        name: &str,
    ) -> Result<ObjectAnswer, QueryError> {
        match receiver.wait_for(Option::is_some).await {
            Ok(outcome) => match outcome.as_ref().expect("waited for Some") {
                Ok(values) => Ok(values.answer(name)),
                Err(error) => Err(error.clone()),
            },
            Err(_) => Err(QueryError::Abandoned {
                url: self.inner.client.url().to_owned(),
            }),
        }
    }
}
