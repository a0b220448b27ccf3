//! Typed records: each stored type names its collection and key once ([`Record`]), and
//! every read decodes through one function ([`decode`]) that turns bad JSON into
//! [`StoreError::Corrupt`] naming the record. A multi-collection read ([`RecordSet`]) checks
//! the shape of the store's answer: one list per requested collection, or an error (never
//! empty lists, which a snapshot would publish as "no proxies").

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{Collection, Consistent, Store, StoreError, Write};

/// A value stored as JSON under a key of its own collection.
pub trait Record: Serialize + DeserializeOwned {
    /// The collection records of this type live in.
    const COLLECTION: Collection;
    /// The key this record is stored under.
    fn key(&self) -> String;
}

/// Decodes one stored value; a value that does not decode is a corrupt record.
pub fn decode<T: DeserializeOwned>(c: Collection, key: &str, raw: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Corrupt {
        collection: c.name(),
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// The stored form of a value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl Write {
    /// Stores `record` under its own key.
    pub fn put<T: Record>(record: &T) -> Self {
        Self::Put(T::COLLECTION, record.key(), encode(record))
    }

    /// Stores any JSON value under an explicit key (values that do not carry their key,
    /// e.g. a user code pointing at a device authorization).
    pub fn json<T: Serialize>(c: Collection, key: &str, value: &T) -> Self {
        Self::Put(c, key.to_owned(), encode(value))
    }
}

/// Several record types read together at one revision: a tuple of `Vec<T>`, one per type,
/// in the order of [`RecordSet::collections`].
pub trait RecordSet: Sized {
    /// The collections to read, in tuple order.
    fn collections() -> Vec<Collection>;
    /// Decodes the store's answer; fails unless it holds exactly one list per collection.
    fn decode(lists: Vec<Vec<(String, Vec<u8>)>>) -> Result<Self, StoreError>;
}

fn decode_list<T: Record>(list: Vec<(String, Vec<u8>)>) -> Result<Vec<T>, StoreError> {
    list.iter()
        .map(|(k, v)| decode(T::COLLECTION, k, v))
        .collect()
}

macro_rules! record_set {
    ($($t:ident),+) => {
        impl<$($t: Record),+> RecordSet for ($(Vec<$t>,)+) {
            fn collections() -> Vec<Collection> {
                vec![$($t::COLLECTION),+]
            }

            fn decode(lists: Vec<Vec<(String, Vec<u8>)>>) -> Result<Self, StoreError> {
                let expected = Self::collections().len();
                if lists.len() != expected {
                    return Err(StoreError::Shape {
                        expected,
                        got: lists.len(),
                    });
                }
                let mut lists = lists.into_iter();
                Ok(($(decode_list::<$t>(lists.next().ok_or(StoreError::Shape {
                    expected,
                    got: 0,
                })?)?,)+))
            }
        }
    };
}

record_set!(A);
record_set!(A, B);
record_set!(A, B, C);
record_set!(A, B, C, D);
record_set!(A, B, C, D, E);
record_set!(A, B, C, D, E, F);
record_set!(A, B, C, D, E, F, G);

impl Consistent {
    /// The records of this view, typed; an answer of the wrong shape is an error.
    pub fn records<S: RecordSet>(self) -> Result<S, StoreError> {
        S::decode(self.collections)
    }
}

impl Store {
    /// Reads one record and the bytes it was decoded from (for an optimistic write).
    pub async fn get_record<T: Record>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Vec<u8>)>, StoreError> {
        match self.get(T::COLLECTION, key).await? {
            Some(raw) => Ok(Some((decode(T::COLLECTION, key, &raw)?, raw))),
            None => Ok(None),
        }
    }

    /// Every record of one type, sorted by key.
    pub async fn list_records<T: Record>(&self) -> Result<Vec<T>, StoreError> {
        let (_, (records,)) = self.read_records::<(Vec<T>,)>().await?;
        Ok(records)
    }

    /// Several record types at one revision, e.g. `read_records::<(Vec<Proxy>, Vec<Route>)>()`.
    pub async fn read_records<S: RecordSet>(&self) -> Result<(u64, S), StoreError> {
        let view = self.read_consistent(&S::collections()).await?;
        let revision = view.revision;
        Ok((revision, view.records()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two record types of the test's own, so the store's tests need no model.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Proxy {
        hostname: String,
    }
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct Route {
        id: String,
    }
    impl Record for Proxy {
        const COLLECTION: Collection = Collection::Proxies;
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

    fn view(lists: usize) -> Consistent {
        Consistent {
            revision: 3,
            collections: vec![Vec::new(); lists],
        }
    }

    #[test]
    fn an_answer_of_the_wrong_shape_is_an_error_not_empty_lists() {
        type Two = (Vec<Proxy>, Vec<Route>);
        for lists in [0, 1, 3] {
            assert!(
                matches!(
                    view(lists).records::<Two>(),
                    Err(StoreError::Shape { expected: 2, got }) if got == lists
                ),
                "{lists} lists"
            );
        }
        let (proxies, routes) = view(2).records::<Two>().unwrap();
        assert!(proxies.is_empty() && routes.is_empty());
    }

    #[test]
    fn a_record_that_does_not_decode_names_itself() {
        let v = Consistent {
            revision: 1,
            collections: vec![vec![("a.example.com".into(), b"{".to_vec())]],
        };
        match v.records::<(Vec<Proxy>,)>() {
            Err(StoreError::Corrupt {
                collection, key, ..
            }) => assert_eq!((collection, key.as_str()), ("proxies", "a.example.com")),
            other => panic!("{other:?}"),
        }
    }
}
