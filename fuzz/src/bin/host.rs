//! Host normalisation and the host table (`props::check_host`).

use portcullis_fuzz::props;

fn main() {
    let snapshot = props::host_snapshot();
    let check = |data: &[u8]| props::check_host(&snapshot, data);
    portcullis_fuzz::driver::run("host", check);
}
