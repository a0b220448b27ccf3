//! Signing keys over a real embedded store: creation at start-up, rotation, and the wait
//! for data planes to ACK a new key.

use super::*;
use crate::oauth::OAuthSettings;
use crate::service::ControlPlane;
use crate::store::Store;

async fn server() -> (OAuthServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cp = ControlPlane::new(Store::open_embedded(dir.path()).unwrap())
        .await
        .unwrap();
    (OAuthServer::new(cp, OAuthSettings::default()).unwrap(), dir)
}

async fn records(server: &OAuthServer) -> Vec<SigningKeyRecord> {
    server.list(Collection::OAuthKeys).await.unwrap()
}

async fn published_kids(server: &OAuthServer) -> Vec<String> {
    let snap = crate::snapshot::build(server.cp().store(), server.cp().master_key())
        .await
        .unwrap();
    let jwks: serde_json::Value = serde_json::from_str(&snap.jwks_json).unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect()
}

fn key(kid: &str, created_at: i64, signs_from: i64, retired_at: Option<i64>) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: kid.into(),
        alg: "ES256".into(),
        private_sealed: String::new(),
        public_jwk: serde_json::Value::Null,
        created_at,
        signs_from,
        retired_at,
    }
}

#[test]
fn a_rotated_key_signs_only_from_its_switch_and_its_predecessor_until_then() {
    let keys = [key("old", 100, 100, Some(210)), key("new", 200, 210, None)];
    let at = |t| signing_at(&keys, t).map(|k| k.kid.as_str());
    assert_eq!(at(99), None);
    assert_eq!(at(200), Some("old"));
    assert_eq!(at(209), Some("old"));
    assert_eq!(at(210), Some("new"));
    // Keys stored before `signs_from` existed sign from creation.
    let legacy = [key("legacy", 100, 0, None)];
    assert_eq!(
        signing_at(&legacy, 100).map(|k| k.kid.as_str()),
        Some("legacy")
    );
}

#[tokio::test]
async fn start_up_creates_one_key_that_signs_and_is_published_at_once() {
    let (server, _d) = server().await;
    assert!(active(&server).await.is_err(), "no key before start-up");
    ensure(&server).await.unwrap();
    ensure(&server).await.unwrap();
    let keys = records(&server).await;
    assert_eq!(keys.len(), 1, "created once: {keys:?}");
    assert_eq!(active(&server).await.unwrap().kid, keys[0].kid);
    assert_eq!(published_kids(&server).await, [keys[0].kid.clone()]);
}

#[tokio::test]
async fn a_rotated_key_waits_for_connected_data_planes_to_ack_it() {
    let (server, _d) = server().await;
    ensure(&server).await.unwrap();
    let old = active(&server).await.unwrap().kid;
    let registry = server.cp().dataplanes().clone();
    registry
        .connected("dp-1", "127.0.0.1", "test", Default::default())
        .await
        .unwrap();
    let rotation = tokio::spawn({
        let server = server.clone();
        async move { rotate(&server).await }
    });
    // Published, not signing, while the data plane has not ACKed it.
    let new = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(k) = records(&server).await.into_iter().find(|k| k.kid != old) {
                return k.kid;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert!(published_kids(&server).await.contains(&new));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!rotation.is_finished(), "waits for the ACK");
    assert_eq!(active(&server).await.unwrap().kid, old);

    let version = server.cp().store().revision().await.unwrap();
    registry.acked("dp-1", version).await.unwrap();
    let rotated = tokio::time::timeout(Duration::from_secs(5), rotation)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(rotated, new);
    assert_eq!(active(&server).await.unwrap().kid, new);
    // The old key stays published (its tokens live on) but no longer signs.
    let kids = published_kids(&server).await;
    assert_eq!(kids, [new.clone(), old.clone()], "newest first");
    let retired = records(&server)
        .await
        .into_iter()
        .find(|k| k.kid == old)
        .unwrap();
    assert!(
        retired.retired_at.is_some_and(|r| r <= now()),
        "{retired:?}"
    );
}

#[tokio::test]
async fn rotation_without_data_planes_signs_at_once_and_the_sweep_keeps_a_key() {
    let (server, _d) = server().await;
    // The sweep creates the key should the store have none.
    rotate_if_due(&server, None).await.unwrap();
    let first = active(&server).await.unwrap().kid;
    let new = rotate(&server).await.unwrap();
    assert_ne!(new, first);
    assert_eq!(active(&server).await.unwrap().kid, new);
    assert_eq!(published_kids(&server).await.len(), 2);
}
