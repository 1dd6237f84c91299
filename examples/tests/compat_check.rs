//! `kafka-compat-check`'s checks against the bundled broker (three brokers, every topic with
//! three replicas): every check must pass, none may be skipped, since the bundled broker
//! supports every API they use. The same checks run against other brokers by hand (README).

#![allow(clippy::unwrap_used, clippy::panic)]

use kafka_broker::Cluster;
use kafka_examples::compat::{run_check, Outcome, Settings, CHECKS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_passes_against_the_bundled_broker() {
    let cluster = Cluster::builder().brokers(3).start().await.unwrap();
    let mut settings = Settings::new(&cluster.bootstrap_servers());
    settings.records = 600;
    settings.replication_factor = Some(3);
    let mut failures = Vec::new();
    for check in CHECKS {
        let outcome = run_check(check, &settings).await;
        eprintln!("{check}: {outcome:?}");
        if !matches!(outcome, Outcome::Pass(_)) {
            failures.push(format!("{check}: {outcome:?}"));
        }
    }
    cluster.shutdown().await;
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A broker that refuses DeleteRecords fails that check and no other; one that does not
/// advertise KIP-848's heartbeat or DeleteRecords gets those checks skipped, with the API
/// named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusing_broker_fails_and_a_smaller_one_skips() {
    use kafka_broker::{Action, Times};
    use kafka_client::{Client, ClientConfig};
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    use kafka_protocol::messages::ApiVersionsResponse;
    use kafka_protocol::{ApiKey, ErrorCode};

    let cluster = Cluster::builder().brokers(1).start().await.unwrap();
    let mut settings = Settings::new(&cluster.bootstrap_servers());
    settings.records = 100;

    let refusal = cluster
        .intercept(ApiKey::DeleteRecords, Times::Always, |_| Action::Error(ErrorCode::PolicyViolation))
        .await
        .unwrap();
    match run_check("delete-records", &settings).await {
        Outcome::Fail(m) => assert!(m.contains("POLICY_VIOLATION"), "{m}"),
        other => panic!("delete-records against a refusing broker: {other:?}"),
    }
    let other = run_check("list-offsets", &settings).await;
    assert!(matches!(other, Outcome::Pass(_)), "list-offsets beside the refusal: {other:?}");
    cluster.remove_intercept(refusal).await.unwrap();

    // The broker's own table, less two APIs.
    let client = Client::new(ClientConfig::new(&cluster.bootstrap_servers()), false).unwrap();
    let table = client.any_connection().await.unwrap().versions().clone();
    client.close();
    let hidden = [ApiKey::ConsumerGroupHeartbeat, ApiKey::DeleteRecords];
    let api_keys: Vec<ApiVersion> = ApiKey::ALL
        .iter()
        .filter(|k| !hidden.contains(k))
        .filter_map(|k| {
            let r = table.broker_range(*k)?;
            Some(ApiVersion { api_key: k.key(), min_version: r.min, max_version: r.max, ..Default::default() })
        })
        .collect();
    let smaller = ApiVersionsResponse { api_keys, ..Default::default() };
    cluster
        .intercept(ApiKey::ApiVersions, Times::Always, move |_| Action::Respond(smaller.clone().into()))
        .await
        .unwrap();
    for (check, api) in [("group-consumer-protocol", "ConsumerGroupHeartbeat"), ("delete-records", "DeleteRecords")] {
        match run_check(check, &settings).await {
            Outcome::Skip(m) => assert_eq!(m, format!("the broker does not support {api}")),
            other => panic!("{check} against a broker without {api}: {other:?}"),
        }
    }
    let classic = run_check("group-range", &settings).await;
    assert!(matches!(classic, Outcome::Pass(_)), "group-range on the smaller broker: {classic:?}");
    cluster.shutdown().await;
}
