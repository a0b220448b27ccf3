//! The property checks of `data-plane/tests/props` (shared with the proptests) and a small
//! driver for running them without AFL.

#[path = "../../data-plane/tests/props/mod.rs"]
pub mod props;

pub mod driver;

/// The edge target's input: a method chosen by the first byte, then the request target up
/// to the first `\n`, then (if there is one) the `Authorization` value up to the next `\n`,
/// then (if there is one) the Host value, else `api.example.com`.
pub fn check_edge(edge: &props::Edge, data: &[u8]) {
    const METHODS: [&[u8]; 6] = [b"GET", b"POST", b"HEAD", b"OPTIONS", b"DELETE", b"PUT"];
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let method = METHODS[usize::from(first) % METHODS.len()];
    let mut lines = rest.splitn(3, |&b| b == b'\n');
    let target = lines.next().unwrap_or_default();
    let authorization = lines.next();
    let host = lines.next().unwrap_or(props::HOST_NAME.as_bytes());
    edge.check(method, target, host, authorization);
}
