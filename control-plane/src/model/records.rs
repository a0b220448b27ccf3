//! Where each stored model type lives: its collection and key, in one place.

use super::{
    CertificateRecord, ChallengeRecord, DataPlaneRecord, ExternalService, Proxy, Route, TokenRecord,
};
use crate::store::{Collection, Record};

impl Record for Proxy {
    const COLLECTION: Collection = Collection::Proxies;
    /// The hostname, stored lowercase.
    fn key(&self) -> String {
        self.hostname.clone()
    }
}

impl Record for Route {
    const COLLECTION: Collection = Collection::Routes;
    fn key(&self) -> String {
        self.id.clone()
    }
}

impl Record for ExternalService {
    const COLLECTION: Collection = Collection::Services;
    fn key(&self) -> String {
        self.name.clone()
    }
}

impl Record for TokenRecord {
    const COLLECTION: Collection = Collection::Tokens;
    fn key(&self) -> String {
        self.id.clone()
    }
}

impl Record for DataPlaneRecord {
    const COLLECTION: Collection = Collection::DataPlanes;
    fn key(&self) -> String {
        self.node_id.clone()
    }
}

impl Record for CertificateRecord {
    const COLLECTION: Collection = Collection::Certificates;
    fn key(&self) -> String {
        self.name.clone()
    }
}

impl Record for ChallengeRecord {
    const COLLECTION: Collection = Collection::AcmeChallenges;
    /// Certificate, domain and token: one answer per challenge of an order.
    fn key(&self) -> String {
        format!("{}:{}:{}", self.certificate, self.domain, self.token)
    }
}
