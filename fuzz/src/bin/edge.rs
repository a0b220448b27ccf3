//! The whole request path in front of a loopback backend: a refused request is never forwarded (`props::Edge`; input format at `check_edge`).

use portcullis_fuzz::props;

fn main() {
    let edge = props::Edge::new();
    let check = |data: &[u8]| portcullis_fuzz::check_edge(&edge, data);
    portcullis_fuzz::driver::run("edge", check);
}
