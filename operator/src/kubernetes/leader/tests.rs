use super::*;

fn held_by(holder: &str, renewed_secs: i64) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(holder.to_string()),
        lease_duration_seconds: Some(15),
        renew_time: Some(MicroTime(
            jiff::Timestamp::from_second(renewed_secs).unwrap(),
        )),
        ..LeaseSpec::default()
    }
}

#[test]
fn no_lease_means_create() {
    let mut elector = Elector::new("a");
    assert_eq!(elector.step(None, Instant::now()), Step::Create);
}

#[test]
fn our_own_lease_is_renewed() {
    let mut elector = Elector::new("a");
    let step = elector.step(Some(&held_by("a", 1)), Instant::now());
    assert_eq!(step, Step::Claim { takeover: false });
}

#[test]
fn a_released_lease_is_taken_at_once() {
    let mut elector = Elector::new("a");
    let released = released_spec(&held_by("b", 1), jiff::Timestamp::from_second(2).unwrap());
    assert_eq!(
        elector.step(Some(&released), Instant::now()),
        Step::Claim { takeover: true }
    );
}

#[test]
fn a_live_lease_is_followed_until_it_stops_changing_for_a_lease_duration() {
    let mut elector = Elector::new("a");
    let start = Instant::now();
    let follow = Step::Follow {
        holder: "b".to_string(),
    };
    assert_eq!(elector.step(Some(&held_by("b", 1)), start), follow);
    // The holder renews: the clock restarts, whatever the renewTime says.
    let later = start + Duration::from_secs(14);
    assert_eq!(elector.step(Some(&held_by("b", 2)), later), follow);
    assert_eq!(
        elector.step(Some(&held_by("b", 2)), later + Duration::from_secs(14)),
        follow,
        "14 s without a renewal is still within the 15 s lease"
    );
    assert_eq!(
        elector.step(Some(&held_by("b", 2)), later + Duration::from_secs(15)),
        Step::Claim { takeover: true }
    );
}

#[test]
fn a_renew_time_far_in_the_past_is_not_trusted() {
    // Another node's clock may be behind: only our own observation counts.
    let mut elector = Elector::new("a");
    assert_eq!(
        elector.step(Some(&held_by("b", 0)), Instant::now()),
        Step::Follow {
            holder: "b".to_string()
        }
    );
}

#[test]
fn claims_count_transitions_and_keep_the_acquire_time_on_renewal() {
    let settings = LeaseSettings {
        namespace: "ns".into(),
        name: "lease".into(),
        identity: "a".into(),
        lease_duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    };
    let t1 = jiff::Timestamp::from_second(100).unwrap();
    let t2 = jiff::Timestamp::from_second(102).unwrap();
    let taken = claimed_spec(Some(&held_by("b", 1)), &settings, true, t1);
    assert_eq!(taken.holder_identity.as_deref(), Some("a"));
    assert_eq!(taken.lease_transitions, Some(1));
    assert_eq!(taken.acquire_time, Some(MicroTime(t1)));
    let renewed = claimed_spec(Some(&taken), &settings, false, t2);
    assert_eq!(renewed.lease_transitions, Some(1));
    assert_eq!(renewed.acquire_time, Some(MicroTime(t1)));
    assert_eq!(renewed.renew_time, Some(MicroTime(t2)));
    assert_eq!(renewed.lease_duration_seconds, Some(15));
    let created = claimed_spec(None, &settings, true, t1);
    assert_eq!(created.lease_transitions, Some(0));
}

mod against_the_api {
    use super::super::*;
    use crate::kubernetes::mock_api::{Exchange, scripted, status};
    use http::Method;
    use serde_json::json;

    const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/ns/leases/lease";

    fn settings() -> LeaseSettings {
        LeaseSettings {
            namespace: "ns".into(),
            name: "lease".into(),
            identity: "a_1".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    fn lease(holder: Option<&str>, resource_version: &str) -> serde_json::Value {
        json!({
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "lease", "namespace": "ns", "resourceVersion": resource_version},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "renewTime": "2026-01-01T00:00:00.000000Z", "leaseTransitions": 3},
        })
    }

    async fn attempt(script: Vec<Exchange>) -> Result<bool, LeaseError> {
        let (client, played) = scripted(script);
        let election = LeaderElection {
            client: client.clone(),
            settings: settings(),
        };
        let api: Api<Lease> = Api::namespaced(client, "ns");
        let result = election.attempt(&api, &mut Elector::new("a_1")).await;
        played.await.expect("every expected request, nothing else");
        result
    }

    #[tokio::test]
    async fn a_missing_lease_is_created_naming_us() {
        let result = attempt(vec![
            Exchange::new(Method::GET, LEASE, 404, status(404, "NotFound")),
            Exchange::new(
                Method::POST,
                "/apis/coordination.k8s.io/v1/namespaces/ns/leases?",
                201,
                lease(Some("a_1"), "1"),
            )
            .with_body(|body| {
                assert_eq!(body["metadata"]["name"], "lease");
                assert_eq!(body["spec"]["holderIdentity"], "a_1");
                assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
                assert_eq!(body["spec"]["leaseTransitions"], 0);
            }),
        ])
        .await;
        assert_eq!(result, Ok(true));
    }

    #[tokio::test]
    async fn our_lease_is_renewed_with_the_resource_version_we_read() {
        let result = attempt(vec![
            Exchange::new(Method::GET, LEASE, 200, lease(Some("a_1"), "7")),
            Exchange::new(
                Method::PUT,
                format!("{LEASE}?"),
                200,
                lease(Some("a_1"), "8"),
            )
            .with_body(|body| {
                assert_eq!(body["metadata"]["resourceVersion"], "7");
                assert_eq!(body["spec"]["holderIdentity"], "a_1");
                assert_eq!(
                    body["spec"]["leaseTransitions"], 3,
                    "a renewal is no transition"
                );
                assert_ne!(body["spec"]["renewTime"], "2026-01-01T00:00:00.000000Z");
            }),
        ])
        .await;
        assert_eq!(result, Ok(true));
    }

    #[tokio::test]
    async fn a_live_lease_of_another_replica_is_only_read() {
        let result = attempt(vec![Exchange::new(
            Method::GET,
            LEASE,
            200,
            lease(Some("b_2"), "7"),
        )])
        .await;
        assert_eq!(result, Ok(false));
    }

    #[tokio::test]
    async fn losing_the_race_for_a_released_lease_is_not_an_error() {
        let result = attempt(vec![
            Exchange::new(Method::GET, LEASE, 200, lease(None, "7")),
            Exchange::new(
                Method::PUT,
                format!("{LEASE}?"),
                409,
                status(409, "Conflict"),
            )
            .with_body(|body| {
                assert_eq!(body["spec"]["holderIdentity"], "a_1");
                assert_eq!(body["spec"]["leaseTransitions"], 4, "a takeover counts");
            }),
        ])
        .await;
        assert_eq!(result, Ok(false));
    }

    #[tokio::test]
    async fn a_failing_api_server_is_an_error_not_a_verdict() {
        let result = attempt(vec![Exchange::new(
            Method::GET,
            LEASE,
            500,
            status(500, "InternalError"),
        )])
        .await;
        assert!(matches!(result, Err(LeaseError::Read(_))), "{result:?}");
    }

    #[tokio::test]
    async fn release_gives_the_lease_up_for_the_next_replica() {
        let (client, played) = scripted(vec![
            Exchange::new(Method::GET, LEASE, 200, lease(Some("a_1"), "9")),
            Exchange::new(Method::PUT, format!("{LEASE}?"), 200, lease(None, "10")).with_body(
                |body| {
                    assert!(body["spec"]["holderIdentity"].is_null(), "{body}");
                    assert_eq!(body["spec"]["leaseDurationSeconds"], 1);
                    assert_eq!(body["metadata"]["resourceVersion"], "9");
                },
            ),
        ]);
        let election = LeaderElection {
            client: client.clone(),
            settings: settings(),
        };
        election.release(&Api::namespaced(client, "ns")).await;
        played.await.expect("every expected request, nothing else");
    }
}

// On a paused clock the boundary is exact: writes are allowed up to the deadline and not
// an instant after, whatever the election task has noticed by then.
#[tokio::test(start_paused = true)]
async fn writes_stop_at_the_renew_deadline() {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (held, receiver) = watch::channel(Some(deadline));
    let leadership = Leadership::Elected(receiver);
    assert!(leadership.is_leader());
    tokio::time::advance(Duration::from_millis(9_999)).await;
    assert!(leadership.is_leader());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert!(!leadership.is_leader(), "a write at the deadline itself");
    // A renewal moves the deadline; losing the Lease ends it at once.
    held.send_replace(Some(tokio::time::Instant::now() + Duration::from_secs(10)));
    assert!(leadership.is_leader());
    held.send_replace(None);
    assert!(!leadership.is_leader());
    assert!(Leadership::Always.is_leader());
}

// Writers that stopped at a passed deadline skip what was due; they must hear that they
// may write again, as on winning, or the skipped statuses and rules wait for a change.
#[tokio::test(start_paused = true)]
async fn a_renewal_past_the_deadline_notifies_like_winning() {
    let now = tokio::time::Instant::now();
    let later = now + Duration::from_secs(10);
    let mut held = None;
    assert_eq!(renew(&mut held, later, now), Renewal::Won);
    assert_eq!(held, Some(later));
    assert_eq!(
        renew(&mut held, later + Duration::from_secs(2), now),
        Renewal::Kept
    );
    let past = later + Duration::from_secs(5);
    assert_eq!(
        renew(&mut held, past + Duration::from_secs(10), past),
        Renewal::Resumed
    );
    assert_eq!(held, Some(past + Duration::from_secs(10)));
}
