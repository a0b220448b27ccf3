//! Bearer token verification: never panics, never accepts (`props::check_verify`).

use portcullis_fuzz::props;

fn main() {
    let verifier = props::verifier();
    let check = |data: &[u8]| props::check_verify(&verifier, data);
    portcullis_fuzz::driver::run("verify", check);
}
